-- Argo CD health check for every kind of tenancy.visio.dev (Entity,
-- LicensePool, PlatformUser, VMR). The operator reports status in the kstatus
-- convention; this reads it the way kstatus does:
--   status not yet written, or written for an older generation -> Progressing
--   Stalled=True (a human must act)                            -> Degraded
--   Ready=True                                                 -> Healthy
--   anything else (Reconciling, waiting on another object)     -> Progressing
-- Install it under resource.customizations.health.tenancy.visio.dev_<Kind>
-- in argocd-cm (see the chart's README).
local hs = { status = "Progressing", message = "Waiting for the operator" }
if obj.status == nil or obj.status.conditions == nil then
  return hs
end
local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.message = "Waiting for the operator to observe generation " .. generation
  return hs
end
local ready, stalled
for _, c in ipairs(obj.status.conditions) do
  if c.type == "Ready" then
    ready = c
  elseif c.type == "Stalled" then
    stalled = c
  end
end
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = stalled.reason .. ": " .. (stalled.message or "")
  return hs
end
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or ""
  return hs
end
if ready ~= nil then
  hs.message = ready.reason .. ": " .. (ready.message or "")
end
return hs
