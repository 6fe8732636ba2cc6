package gatewayapi

import (
	"fmt"
	"strings"

	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/berthnet/berth/xds/ir"
)

// filterSet is what a rule's filters do, in IR terms.
type filterSet struct {
	requestHeaders, responseHeaders *ir.HeaderModifier
	// hostHeader is the Host a RequestHeaderModifier sets (or adds): Envoy
	// takes it only as a host rewrite (see requestHostRewrite).
	hostHeader *string
	rewrite    *ir.URLRewrite
	redirect   *ir.Redirect
	mirrors    []*ir.Mirror
	// prefixOnly: a ReplacePrefixMatch needs every match to be a PathPrefix.
	prefixOnly bool
}

// httpFilters converts an HTTPRoute rule's filters. An error makes the rule
// unservable (UnsupportedValue); a mirror whose backend does not resolve is
// left out and reported through b.
func httpFilters(fs []gwv1.HTTPRouteFilter, b *backends) (*filterSet, error) {
	out := &filterSet{}
	for i := range fs {
		f := &fs[i]
		var err error
		switch f.Type {
		case gwv1.HTTPRouteFilterRequestHeaderModifier:
			out.requestHeaders, out.hostHeader, err = headerModifier(out.requestHeaders, f.RequestHeaderModifier, true)
		case gwv1.HTTPRouteFilterResponseHeaderModifier:
			out.responseHeaders, _, err = headerModifier(out.responseHeaders, f.ResponseHeaderModifier, false)
		case gwv1.HTTPRouteFilterRequestMirror:
			err = out.mirror(f.RequestMirror, b)
		case gwv1.HTTPRouteFilterRequestRedirect:
			err = out.redirectFilter(f.RequestRedirect)
		case gwv1.HTTPRouteFilterURLRewrite:
			err = out.urlRewrite(f.URLRewrite)
		default:
			err = fmt.Errorf("filter type %s is not supported", f.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("filters[%d]: %w", i, err)
		}
	}
	if out.redirect != nil && out.rewrite != nil {
		return nil, fmt.Errorf("RequestRedirect and URLRewrite cannot be combined")
	}
	if err := out.requestHostRewrite(); err != nil {
		return nil, err
	}
	return out, nil
}

// requestHostRewrite turns a Host header set by a RequestHeaderModifier
// into the host rewrite Envoy takes it as (Envoy refuses Host among the
// headers a route adds or sets, as Envoy Gateway does). It cannot be
// combined with a URLRewrite of the hostname: one would be lost. A
// redirect forwards nothing, so there it changes nothing.
func (out *filterSet) requestHostRewrite() error {
	if out.hostHeader == nil || out.redirect != nil {
		return nil
	}
	if out.rewrite != nil && out.rewrite.Hostname != nil {
		return fmt.Errorf("a RequestHeaderModifier sets Host and a URLRewrite sets the hostname: keep one")
	}
	if out.rewrite == nil {
		out.rewrite = &ir.URLRewrite{}
	}
	h := *out.hostHeader
	out.rewrite.Hostname = &h
	return nil
}

// grpcFilters converts a GRPCRoute rule's filters.
func grpcFilters(fs []gwv1.GRPCRouteFilter, b *backends) (*filterSet, error) {
	out := &filterSet{}
	for i := range fs {
		f := &fs[i]
		var err error
		switch f.Type {
		case gwv1.GRPCRouteFilterRequestHeaderModifier:
			out.requestHeaders, out.hostHeader, err = headerModifier(out.requestHeaders, f.RequestHeaderModifier, true)
		case gwv1.GRPCRouteFilterResponseHeaderModifier:
			out.responseHeaders, _, err = headerModifier(out.responseHeaders, f.ResponseHeaderModifier, false)
		case gwv1.GRPCRouteFilterRequestMirror:
			err = out.mirror(f.RequestMirror, b)
		default:
			err = fmt.Errorf("filter type %s is not supported", f.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("filters[%d]: %w", i, err)
		}
	}
	if err := out.requestHostRewrite(); err != nil {
		return nil, err
	}
	return out, nil
}

// headerModifier converts a header modifier filter. Envoy will not add,
// set or remove a pseudo-header (":authority", ":path") or Host, and
// would drop them unsaid: of a request's (request), a Host set or added
// is returned as host, for a host rewrite (one value: a request has one
// Host); every other such change is refused.
func headerModifier(prev *ir.HeaderModifier, f *gwv1.HTTPHeaderFilter, request bool) (m *ir.HeaderModifier, host *string, err error) {
	if f == nil {
		return nil, nil, fmt.Errorf("header modifier filter without its settings")
	}
	if prev != nil {
		return nil, nil, fmt.Errorf("header modifier filter repeated")
	}
	for _, hs := range [][]gwv1.HTTPHeader{f.Add, f.Set} {
		for _, h := range hs {
			if strings.ContainsAny(h.Value, "\x00\r\n") {
				return nil, nil, fmt.Errorf("header %s: a value with NUL, CR or LF cannot be sent", h.Name)
			}
		}
	}
	m = &ir.HeaderModifier{}
	keep := func(name, verb string, value string) (bool, error) {
		switch {
		case strings.HasPrefix(name, ":"):
			return false, fmt.Errorf("header %s: a pseudo-header cannot be %s", name, verb)
		case !strings.EqualFold(name, "host"):
			return true, nil
		case !request:
			return false, fmt.Errorf("header %s: Host cannot be %s in a response", name, verb)
		case verb == "removed":
			return false, fmt.Errorf("header %s: a request's Host cannot be removed", name)
		case host != nil && *host != value:
			return false, fmt.Errorf("header %s: given two values, %q and %q; a request has one Host", name, *host, value)
		}
		host = &value
		return false, nil
	}
	for _, h := range f.Set {
		if ok, err := keep(string(h.Name), "set", h.Value); err != nil {
			return nil, nil, err
		} else if ok {
			m.Set = append(m.Set, ir.Header{Name: string(h.Name), Value: h.Value})
		}
	}
	for _, h := range f.Add {
		if ok, err := keep(string(h.Name), "added", h.Value); err != nil {
			return nil, nil, err
		} else if ok {
			m.Add = append(m.Add, ir.Header{Name: string(h.Name), Value: h.Value})
		}
	}
	for _, n := range f.Remove {
		if ok, err := keep(n, "removed", ""); err != nil {
			return nil, nil, err
		} else if ok {
			m.Remove = append(m.Remove, n)
		}
	}
	return m, host, nil
}

func (out *filterSet) mirror(f *gwv1.HTTPRequestMirrorFilter, b *backends) error {
	if f == nil {
		return fmt.Errorf("RequestMirror filter without its settings")
	}
	percent := 100.0
	switch {
	case f.Percent != nil:
		percent = float64(*f.Percent)
	case f.Fraction != nil:
		den := int32(100)
		if f.Fraction.Denominator != nil {
			den = *f.Fraction.Denominator
		}
		if den <= 0 || f.Fraction.Numerator < 0 || f.Fraction.Numerator > den {
			return fmt.Errorf("RequestMirror fraction %d/%d is not between 0 and 1", f.Fraction.Numerator, den)
		}
		percent = 100 * float64(f.Fraction.Numerator) / float64(den)
	}
	if percent < 0 || percent > 100 {
		return fmt.Errorf("RequestMirror percent %v is not between 0 and 100", percent)
	}
	if c := b.resolve(&f.BackendRef); c != "" {
		out.mirrors = append(out.mirrors, &ir.Mirror{Cluster: c, Percent: percent})
	}
	return nil
}

func (out *filterSet) pathModifier(p *gwv1.HTTPPathModifier) (*ir.PathModifier, error) {
	if p == nil {
		return nil, nil
	}
	switch p.Type {
	case gwv1.FullPathHTTPPathModifier:
		if p.ReplaceFullPath == nil {
			return nil, fmt.Errorf("ReplaceFullPath without a value")
		}
		v := *p.ReplaceFullPath
		return &ir.PathModifier{FullPath: &v}, nil
	case gwv1.PrefixMatchHTTPPathModifier:
		if p.ReplacePrefixMatch == nil {
			return nil, fmt.Errorf("ReplacePrefixMatch without a value")
		}
		v := *p.ReplacePrefixMatch
		out.prefixOnly = true
		return &ir.PathModifier{PrefixMatch: &v}, nil
	}
	return nil, fmt.Errorf("path modifier type %q is not supported", p.Type)
}

func (out *filterSet) redirectFilter(f *gwv1.HTTPRequestRedirectFilter) error {
	if f == nil {
		return fmt.Errorf("RequestRedirect filter without its settings")
	}
	if out.redirect != nil {
		return fmt.Errorf("RequestRedirect filter repeated")
	}
	r := &ir.Redirect{StatusCode: 302}
	if f.StatusCode != nil {
		r.StatusCode = *f.StatusCode
	}
	switch r.StatusCode {
	case 301, 302, 303, 307, 308:
	default:
		return fmt.Errorf("redirect status code %d is not supported; use 301, 302, 303, 307 or 308", r.StatusCode)
	}
	if f.Scheme != nil {
		s := strings.ToLower(*f.Scheme)
		if s != "http" && s != "https" {
			return fmt.Errorf("redirect scheme %q is not http or https", *f.Scheme)
		}
		r.Scheme = &s
	}
	if f.Hostname != nil {
		h := string(*f.Hostname)
		r.Hostname = &h
	}
	if f.Port != nil {
		if *f.Port < 1 || *f.Port > 65535 {
			return fmt.Errorf("redirect port %d out of range", *f.Port)
		}
		p := uint32(*f.Port)
		r.Port = &p
	}
	var err error
	if r.Path, err = out.pathModifier(f.Path); err != nil {
		return fmt.Errorf("redirect: %w", err)
	}
	out.redirect = r
	return nil
}

func (out *filterSet) urlRewrite(f *gwv1.HTTPURLRewriteFilter) error {
	if f == nil {
		return fmt.Errorf("URLRewrite filter without its settings")
	}
	if out.rewrite != nil {
		return fmt.Errorf("URLRewrite filter repeated")
	}
	r := &ir.URLRewrite{}
	if f.Hostname != nil {
		h := string(*f.Hostname)
		r.Hostname = &h
	}
	var err error
	if r.Path, err = out.pathModifier(f.Path); err != nil {
		return fmt.Errorf("URLRewrite: %w", err)
	}
	out.rewrite = r
	return nil
}
