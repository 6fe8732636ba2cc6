package nftrules

// WithBase returns rs with its base chains' rules among its Chains, as
// a listing shows them.
func WithBase(rs Ruleset) Ruleset { return *withBase(rs) }
