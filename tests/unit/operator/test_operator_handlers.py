"""The kopf glue without kopf running: command line, registration, the runtime wrapper, child events, resync."""

from __future__ import annotations

def test_operator_command_line() -> None:
    from kubetune.handlers import parse_args

    options = parse_args(["--standalone", "-n", "a", "-n", "b", "--liveness", "http://0.0.0.0:8081/healthz"])
    assert options.standalone
    assert options.namespace == ["a", "b"]
    assert options.liveness == "http://0.0.0.0:8081/healthz"
    ha = parse_args(["-A", "--peering", "kubetune", "--priority", "10"])
    assert (ha.all_namespaces, ha.peering, ha.priority) == (True, "kubetune", 10)
    with pytest.raises(SystemExit):
        parse_args(["--standalone", "--peering", "x"])


def test_resync_thread_reconciles_tracked_objects_until_stopped() -> None:
    import threading

    from kubetune.handlers.resync import Resync

    seen: list[tuple[str, str]] = []
    called = threading.Event()

    def reconcile(namespace: str, name: str) -> None:
        seen.append((namespace, name))
        called.set()
        raise RuntimeError("one failure does not stop the loop")

    resync = Resync(0.01, {"FineTuneJob": reconcile})
    resync.track("FineTuneJob", "ns", "a", True)
    resync.track("FineTuneJob", "ns", "b", True)
    resync.track("FineTuneJob", "ns", "b", False)
    resync.start()
    assert called.wait(5)
    resync.stop()
    assert set(seen) == {("ns", "a")}
    assert resync.tracked() == [("FineTuneJob", "ns", "a")]
