package nftrules

import "strings"

// ListedChains reads `nft list table` output: each chain's rules as nft
// writes them (base chains' type lines left out). Kernel tests compare it
// with a Ruleset's text, which is how the compiler and nft are kept in
// agreement.
func ListedChains(listing string) map[string][]string {
	chains := map[string][]string{}
	cur := ""
	for _, line := range strings.Split(listing, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "chain "):
			cur = strings.TrimSuffix(strings.TrimPrefix(line, "chain "), " {")
			chains[cur] = []string{}
		case line == "}":
			cur = ""
		case cur != "" && line != "" && !strings.HasPrefix(line, "type "):
			chains[cur] = append(chains[cur], line)
		}
	}
	return chains
}

// WithBase returns rs with its base chains' rules among its Chains, as
// a listing shows them.
func WithBase(rs Ruleset) Ruleset { return *withBase(rs) }
