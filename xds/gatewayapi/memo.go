package gatewayapi

import (
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/types"

	"github.com/berthnet/berth/xds/ir"
)

// Memo carries the routes one translation compiled into the next, so that
// a change to one route of thousands recompiles that route only; and the
// attachment of routes to listeners, so that it is updated only for the
// routes that changed when nothing else did (attachMemo). A route
// is compiled again when its spec moved (see compile), or when anything its
// compilation read did: a Service its backends name (present or missing)
// or the ReferenceGrants of a namespace they reach into. Attachment to
// listeners, precedence and status are updated from the compiled routes
// (or done again in full), so the result is the one Translate gives; unchanged routes also keep their IR values, which lets
// the next stage and the engine compare by pointer.
//
// Objects without a resourceVersion (tests building them by hand) are
// never reused. A Memo is not safe for concurrent use; its zero value is
// ready.
type Memo struct {
	// routes are kept in place from one translation to the next, stamped
	// with the last that used them; the others are dropped at its end.
	epoch  uint64
	routes map[routeKey]*memoRoute
	// attach is the last attachment, when it can be updated.
	attach *attachMemo
	// valid spares the validation of the groups' unchanged routes.
	valid ir.Validator
}

type routeKey struct{ kind, ns, name string }

type memoRoute struct {
	epoch uint64 // the last translation that used it
	// resourceVersion is the version compiled: UID and generation, or
	// the resourceVersion (see compile).
	resourceVersion string
	cr              *compiledRoute
	deps            []dep
}

// dep is one object a compilation read, at the version it read.
type dep struct {
	grants   bool // the ReferenceGrants of namespace ns; else Service ns/name
	ns, name string
	version  string
}

// missing is the version of an object that was not there.
const missing = "-"

// Translate is the package's Translate, reusing what the last call of this
// Memo compiled where it still holds.
func (m *Memo) Translate(res *Resources, opts Options) *Result {
	return translate(res, opts, m)
}

// recorder collects what one route's compilation reads from the index.
type recorder struct {
	deps      []dep
	unversion bool // read an object without a resourceVersion: do not keep
}

func (ix *index) recordService(ns, name string) {
	if ix.rec == nil {
		return
	}
	v := missing
	if s := ix.services[nn{ns, name}]; s != nil {
		v = s.ResourceVersion
		if v == "" {
			ix.rec.unversion = true
		}
	}
	ix.rec.deps = append(ix.rec.deps, dep{ns: ns, name: name, version: v})
}

func (ix *index) recordGrants(ns string) {
	if ix.rec == nil {
		return
	}
	v, ok := ix.grantVersion(ns)
	if !ok {
		ix.rec.unversion = true
	}
	ix.rec.deps = append(ix.rec.deps, dep{grants: true, ns: ns, version: v})
}

// grantVersion sums up the ReferenceGrants of a namespace: their names and
// resourceVersions; ok is false when one has no resourceVersion.
func (ix *index) grantVersion(ns string) (string, bool) {
	if v, ok := ix.grantVersions[ns]; ok {
		return v, v != ""
	}
	gs := ix.grants[ns]
	parts := make([]string, 0, len(gs))
	ok := true
	for _, g := range gs {
		if g.ResourceVersion == "" {
			ok = false
		}
		parts = append(parts, g.Name+"@"+g.ResourceVersion)
	}
	slices.Sort(parts)
	v := missing + strings.Join(parts, ",")
	if !ok {
		v = ""
	}
	if ix.grantVersions == nil {
		ix.grantVersions = map[string]string{}
	}
	ix.grantVersions[ns] = v
	return v, ok
}

// holds reports whether every dependency is at the version it was read at.
func (e *memoRoute) holds(ix *index) bool {
	for _, d := range e.deps {
		if d.grants {
			if v, ok := ix.grantVersion(d.ns); !ok || v != d.version {
				return false
			}
			continue
		}
		v := missing
		if s := ix.services[nn{d.ns, d.name}]; s != nil {
			v = s.ResourceVersion
		}
		if v != d.version {
			return false
		}
	}
	return true
}

// memoTable is one translation's view of a Memo: its routes, and the
// translation's epoch.
type memoTable struct {
	routes map[routeKey]*memoRoute
	epoch  uint64
}

func (m *Memo) begin() *memoTable {
	if m == nil {
		return nil
	}
	if m.routes == nil {
		m.routes = map[routeKey]*memoRoute{}
	}
	m.epoch++
	return &memoTable{routes: m.routes, epoch: m.epoch}
}

func (m *Memo) end(t *memoTable) {
	if m == nil {
		return
	}
	for k, e := range m.routes {
		if e.epoch != t.epoch {
			delete(m.routes, k)
		}
	}
}

// compile returns the compiled route of an object, reused when it holds.
// A compilation reads the route's spec, name, generation and creation
// time: the object's UID and generation name that content (the Gateway
// API kinds bump the generation on every spec change), so a route whose
// status alone was written (by this controller, after each change: every
// route's resourceVersion moves) is not compiled again. Objects without a
// UID or generation are known by resourceVersion.
func (t *memoTable) compile(kind string, meta interface {
	GetNamespace() string
	GetName() string
	GetResourceVersion() string
	GetUID() types.UID
	GetGeneration() int64
}, ix *index, compile func() *compiledRoute) *compiledRoute {
	rv := meta.GetResourceVersion()
	if t == nil || rv == "" {
		return compile()
	}
	if uid, gen := meta.GetUID(), meta.GetGeneration(); uid != "" && gen != 0 {
		rv = string(uid) + "@" + strconv.FormatInt(gen, 10)
	}
	k := routeKey{kind, meta.GetNamespace(), meta.GetName()}
	if e := t.routes[k]; e != nil && e.resourceVersion == rv && e.holds(ix) {
		e.epoch = t.epoch
		return e.cr
	}
	ix.rec = &recorder{}
	cr := compile()
	rec := ix.rec
	ix.rec = nil
	if !rec.unversion {
		// Compilation is over: the route must not keep the index (and
		// through it the whole snapshot) alive.
		cr.backends.ix = nil
		t.routes[k] = &memoRoute{epoch: t.epoch, resourceVersion: rv, cr: cr, deps: rec.deps}
	} else {
		delete(t.routes, k)
	}
	return cr
}
