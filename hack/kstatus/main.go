// Command kstatus prints the verdict of sigs.k8s.io/cli-utils' kstatus (what Flux, kpt and the cli-utils
// applier wait on) for Kubernetes objects, so tests can check kubetune's conditions against the real library
// instead of a re-implementation of its rules.
//
// Usage: kstatus [FILE]   (stdin without FILE)
//
// The input is a stream of YAML documents or JSON objects; for each object one JSON line is printed:
// {"kind":..., "name":..., "status":"Current|InProgress|Failed|Terminating|Unknown", "message":...}.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type verdict struct {
	Kind    string `json:"kind"`
	Name    string `json:"name"`
	Status  string `json:"status"`
	Message string `json:"message"`
}

func main() {
	if err := run(os.Args[1:], os.Stdin, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "kstatus: %v\n", err)
		os.Exit(2)
	}
}

func run(args []string, stdin io.Reader, stdout io.Writer) error {
	input := stdin
	switch len(args) {
	case 0:
	case 1:
		file, err := os.Open(args[0])
		if err != nil {
			return err
		}
		defer file.Close()
		input = file
	default:
		return errors.New("usage: kstatus [FILE] (YAML or JSON objects; stdin without FILE)")
	}
	decoder := utilyaml.NewYAMLOrJSONDecoder(bufio.NewReader(input), 4096)
	out := json.NewEncoder(stdout)
	for {
		var raw json.RawMessage
		if err := decoder.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("cannot decode the input: %w", err)
		}
		// apimachinery's JSON reader keeps whole numbers int64, as the API server's objects have them
		// (encoding/json would give float64, which kstatus' generation accessors reject).
		object := map[string]interface{}{}
		if err := utiljson.Unmarshal(raw, &object); err != nil {
			return fmt.Errorf("cannot decode the input: %w", err)
		}
		if len(object) == 0 {
			continue // an empty YAML document
		}
		resource := &unstructured.Unstructured{Object: object}
		result, err := status.Compute(resource)
		if err != nil {
			return fmt.Errorf("%s %s: %w", resource.GetKind(), resource.GetName(), err)
		}
		line := verdict{resource.GetKind(), resource.GetName(), result.Status.String(), result.Message}
		if err := out.Encode(line); err != nil {
			return err
		}
	}
}
