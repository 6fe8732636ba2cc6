package bgp

import (
	"context"
	"log/slog"
	"net/netip"

	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
)

// notifyHandler passes GoBGP's log records on and catches the ones that
// say a NOTIFICATION was sent or received: the server's peer events do not
// carry it when the OPEN exchange fails (a wrong ASN), but its log does,
// with the neighbour, the code and the subcode.
type notifyHandler struct {
	next  slog.Handler
	attrs []slog.Attr
	on    func(neighbor netip.Addr, why string)
}

func (h *notifyHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelInfo || h.next.Enabled(ctx, l)
}

func (h *notifyHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "sent notification" || r.Message == "received notification" {
		var neighbor netip.Addr
		code, sub := -1, 0
		look := func(a slog.Attr) bool {
			switch a.Key {
			case "Key":
				neighbor, _ = netip.ParseAddr(a.Value.String())
			case "Code":
				code = int(a.Value.Int64())
			case "Subcode":
				sub = int(a.Value.Int64())
			}
			return true
		}
		for _, a := range h.attrs {
			look(a)
		}
		r.Attrs(look)
		// A Cease "peer de-configured" sent is Berth removing the peer
		// itself (its settings changed, or the speaker stops): not an
		// error of the session that replaces it.
		ours := r.Message == "sent notification" && code == int(bgp.BGP_ERROR_CEASE) && sub == int(bgp.BGP_ERROR_SUB_PEER_DECONFIGURED)
		if neighbor.IsValid() && code >= 0 && !ours {
			dir := "notification sent: "
			if r.Message == "received notification" {
				dir = "notification received: "
			}
			h.on(neighbor.Unmap(), dir+bgp.NewNotificationErrorCode(uint8(code), uint8(sub)).String())
		}
	}
	if h.next.Enabled(ctx, r.Level) {
		return h.next.Handle(ctx, r)
	}
	return nil
}

func (h *notifyHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &notifyHandler{next: h.next.WithAttrs(as), attrs: append(append([]slog.Attr(nil), h.attrs...), as...), on: h.on}
}

func (h *notifyHandler) WithGroup(name string) slog.Handler {
	return &notifyHandler{next: h.next.WithGroup(name), attrs: h.attrs, on: h.on}
}
