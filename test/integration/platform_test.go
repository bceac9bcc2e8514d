package integration

// platformEntity is the Entity whose namespace holds the Concierges: the
// manager's --platform-entity and the admission policies' default.
const platformEntity = "platform"
