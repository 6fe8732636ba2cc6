package bgp

// RemoveRoutes deletes every route the Routes installer owns
// (RouteProtocol) from the calling thread's network namespace, whatever
// it learned: for an uninstall, after the speaker stopped. Run already
// removes them when it stops; this covers an agent that died before it
// could.
func RemoveRoutes() error {
	var r Routes
	r.init()
	return r.sync(true)
}
