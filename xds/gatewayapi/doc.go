// Package gatewayapi is the first stage of Berth's xDS pipeline: it turns a
// snapshot of Kubernetes resources (Gateway API and Ingress) into one
// validated ir.Group per Envoy node group, and computes the status Berth
// writes back. It is pure: no client, no clock. The controller gathers the
// objects, calls Translate, hands the groups to the second stage
// (xds/translator) and writes the statuses; Endpoints runs on its own on
// every EndpointSlice change, without re-translation.
//
// Decisions the Gateway API leaves to implementations, or where Berth
// narrows it:
//   - RegularExpression path matches rank after Exact and before PathPrefix
//     matches, longer expressions first (as Envoy Gateway does), so that a
//     catch-all prefix never shadows a regular expression.
//   - A rule Berth cannot serve (an unsupported filter such as CORS,
//     ExternalAuth or ExtensionRef, per-backend filters, an invalid regular
//     expression or timeout, ReplacePrefixMatch without a PathPrefix match)
//     is dropped; its route stays Accepted with PartiallyInvalid=True, or
//     is not Accepted (UnsupportedValue) when no rule is left.
//   - A rule whose backends all fail to resolve, or that has none, answers
//     500 directly; a rule with some unresolved backends sends their weight's
//     share to an empty cluster, which Envoy answers with 500.
//   - A listener whose certificate references do not all resolve is not
//     served (Programmed=False); routes still attach to it.
//   - Ingress ImplementationSpecific paths are Prefix paths. The HTTPS
//     listener (port 443, present when any Ingress of the class has TLS)
//     serves the same rules as the HTTP one (port 80); Envoy picks the
//     certificate by SNI.
//   - Conditions carry observedGeneration but no lastTransitionTime (no
//     clock here): merge them with meta.SetStatusCondition, which keeps the
//     previous time when the status did not change.
package gatewayapi
