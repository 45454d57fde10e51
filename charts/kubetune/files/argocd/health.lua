-- Argo CD health check for kubetune.io FineTuneJob and Adapter: set it as
-- resource.customizations.health.kubetune.io_FineTuneJob and resource.customizations.health.kubetune.io_Adapter
-- in argocd-cm (docs/gitops.md). The operator writes kstatus conditions (Ready, Reconciling, Stalled) and
-- status.observedGeneration, and this check reads them the way kstatus does, plus Argo CD's Suspended.
-- Only Lua's base and table libraries are used: Argo CD runs health checks without the others.
local hs = {}
local status = obj.status or {}

local function condition(kind)
  for _, found in ipairs(status.conditions or {}) do
    if found.type == kind then
      return found
    end
  end
  return nil
end

local function is_true(kind)
  local found = condition(kind)
  return found ~= nil and found.status == "True", found
end

if status.observedGeneration == nil or status.observedGeneration ~= obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "waiting for the kubetune operator to observe this generation"
  return hs
end
-- Stalled (kstatus: Failed) before Reconciling (kstatus: InProgress); the operator never sets both True.
for _, rule in ipairs({{"Stalled", "Degraded"}, {"Reconciling", "Progressing"}}) do
  local on, found = is_true(rule[1])
  if on then
    hs.status = rule[2]
    hs.message = found.message
    return hs
  end
end
local ready, ready_condition = is_true("Ready")
if status.phase == "Suspended" then
  hs.status = "Suspended"
  hs.message = ready_condition ~= nil and ready_condition.message or "suspended by spec.suspend"
  return hs
end
if ready then
  hs.status = "Healthy"
  hs.message = ready_condition.message
  return hs
end
hs.status = "Progressing"
hs.message = ready_condition ~= nil and ready_condition.message or "waiting for the kubetune operator"
return hs
