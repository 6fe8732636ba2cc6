package gatewayapi

import (
	"fmt"
	"regexp"
	"strings"

	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/berthnet/berth/xds/ir"
)

// compiledMatch is one match of a rule in IR terms, with its precedence
// (hostname, age and name are filled in later).
type compiledMatch struct {
	index   int
	path    *ir.StringMatch
	headers []*ir.NamedMatch
	query   []*ir.NamedMatch
	method  string
	key     precedence
}

// httpMatch converts one HTTPRouteMatch. A missing path is PathPrefix "/".
func httpMatch(m *gwv1.HTTPRouteMatch) (*compiledMatch, error) {
	out := &compiledMatch{path: &ir.StringMatch{Type: ir.Prefix, Value: "/"}}
	if p := m.Path; p != nil {
		t := gwv1.PathMatchPathPrefix
		if p.Type != nil {
			t = *p.Type
		}
		v := "/"
		if p.Value != nil {
			v = *p.Value
		}
		switch t {
		case gwv1.PathMatchExact:
			out.path = &ir.StringMatch{Type: ir.Exact, Value: v}
		case gwv1.PathMatchPathPrefix:
			// "/foo/" and "/foo" match the same segments.
			if len(v) > 1 {
				v = strings.TrimRight(v, "/")
				if v == "" {
					v = "/"
				}
			}
			out.path = &ir.StringMatch{Type: ir.Prefix, Value: v}
		case gwv1.PathMatchRegularExpression:
			if err := checkRegex(v); err != nil {
				return nil, fmt.Errorf("path: %w", err)
			}
			out.path = &ir.StringMatch{Type: ir.Regex, Value: v}
		default:
			return nil, fmt.Errorf("path match type %q is not supported", t)
		}
		if t != gwv1.PathMatchRegularExpression && !strings.HasPrefix(v, "/") {
			return nil, fmt.Errorf("path %q does not start with /", v)
		}
	}
	var err error
	out.headers, err = namedMatches("header", m.Headers, true, func(h gwv1.HTTPHeaderMatch) (string, string, bool) {
		return string(h.Name), h.Value, h.Type != nil && *h.Type == gwv1.HeaderMatchRegularExpression
	})
	if err != nil {
		return nil, err
	}
	out.query, err = namedMatches("query parameter", m.QueryParams, false, func(q gwv1.HTTPQueryParamMatch) (string, string, bool) {
		return string(q.Name), q.Value, q.Type != nil && *q.Type == gwv1.QueryParamMatchRegularExpression
	})
	if err != nil {
		return nil, err
	}
	if m.Method != nil {
		out.method = string(*m.Method)
	}
	out.key.pathRank, out.key.pathLen = pathRank(out.path)
	out.key.method = out.method != ""
	out.key.headers = len(out.headers)
	out.key.query = len(out.query)
	return out, nil
}

// checkRegex refuses what Envoy would refuse of a regular expression (RE2):
// one that does not compile, or an empty one, which Envoy rejects with the
// whole route configuration, every route of the port.
func checkRegex(re string) error {
	if re == "" {
		return fmt.Errorf("empty regular expression; Envoy needs at least one character")
	}
	if _, err := regexp.Compile(re); err != nil {
		return fmt.Errorf("regular expression %q: %w", re, err)
	}
	return nil
}

// namedMatches turns header or query parameter matches into IR matches;
// the first of a name wins. Header names are case-insensitive (fold
// lowercases them), query parameter names are not.
func namedMatches[T any](what string, items []T, fold bool, get func(T) (name, value string, regex bool)) ([]*ir.NamedMatch, error) {
	var out []*ir.NamedMatch
	seen := map[string]bool{}
	for _, it := range items {
		name, value, regex := get(it)
		if fold {
			name = strings.ToLower(name)
		}
		if seen[name] {
			continue
		}
		seen[name] = true
		nm, err := namedMatch(name, value, regex)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", what, name, err)
		}
		out = append(out, nm)
	}
	return out, nil
}

func namedMatch(name, value string, regex bool) (*ir.NamedMatch, error) {
	if regex {
		if err := checkRegex(value); err != nil {
			return nil, err
		}
		return &ir.NamedMatch{Name: name, StringMatch: ir.StringMatch{Type: ir.Regex, Value: value}}, nil
	}
	return &ir.NamedMatch{Name: name, StringMatch: ir.StringMatch{Type: ir.Exact, Value: value}}, nil
}

// grpcMatch converts one GRPCRouteMatch into a path match on
// "/<service>/<method>": Exact when both are exact, a Prefix "/<service>"
// for a service alone, and a regular expression otherwise.
func grpcMatch(m *gwv1.GRPCRouteMatch) (*compiledMatch, error) {
	out := &compiledMatch{path: &ir.StringMatch{Type: ir.Prefix, Value: "/"}}
	out.key.grpc = true
	if mm := m.Method; mm != nil {
		var svc, method string
		if mm.Service != nil {
			svc = *mm.Service
		}
		if mm.Method != nil {
			method = *mm.Method
		}
		if svc == "" && method == "" {
			return nil, fmt.Errorf("method match with neither service nor method")
		}
		regex := mm.Type != nil && *mm.Type == gwv1.GRPCMethodMatchRegularExpression
		out.key.service, out.key.grpcMethod = len(svc), len(method)
		switch {
		case !regex && svc != "" && method != "":
			out.path = &ir.StringMatch{Type: ir.Exact, Value: "/" + svc + "/" + method}
		case !regex && method == "":
			out.path = &ir.StringMatch{Type: ir.Prefix, Value: "/" + svc}
		default:
			s, me := `[^/]+`, `[^/]+`
			if svc != "" {
				s = svc
				if !regex {
					s = regexp.QuoteMeta(svc)
				}
			}
			if method != "" {
				me = method
				if !regex {
					me = regexp.QuoteMeta(method)
				}
			}
			v := "/" + s + "/" + me
			if _, err := regexp.Compile(v); err != nil {
				return nil, fmt.Errorf("service/method regular expression %q: %w", v, err)
			}
			out.path = &ir.StringMatch{Type: ir.Regex, Value: v}
		}
	}
	var err error
	out.headers, err = namedMatches("header", m.Headers, true, func(h gwv1.GRPCHeaderMatch) (string, string, bool) {
		return string(h.Name), h.Value, h.Type != nil && *h.Type == gwv1.GRPCHeaderMatchRegularExpression
	})
	if err != nil {
		return nil, err
	}
	out.key.headers = len(out.headers)
	return out, nil
}
