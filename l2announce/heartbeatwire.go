package l2announce

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
)

// The heartbeat wire format. Version 2 (this release):
//
//	version (1 byte, 2), flags (1 byte: 1 = leaving),
//	time (8 bytes: the sender's wall clock, Unix nanoseconds, never less
//	than in its previous heartbeat), name length (1 byte, 1-255), name,
//	group count (2 bytes), groups (8 bytes each),
//	HMAC-SHA256 of all before it under NodeKey(secret, name).
//
// Version 1 (the release before) had the same layout, signed with the
// shared secret itself; it is read only while peers still send it
// (see Members.Receive).
const (
	heartbeatV1   = 1
	heartbeatV2   = 2
	flagLeaving   = 1
	macLen        = sha256.Size
	headerLen     = 2 + 8 + 1
	nodeKeyPrefix = "berth-l2-heartbeat/v2/"
	// MaxGroups bounds the groups one heartbeat carries (8 bytes each).
	MaxGroups = 1024
	// MaxHeartbeatSize is the largest heartbeat: a name of 255 bytes and
	// MaxGroups groups (8.5 KiB; the kernel fragments it on the LAN).
	MaxHeartbeatSize = headerLen + 255 + 2 + 8*MaxGroups + macLen
)

// NodeKey is the key node signs its heartbeats with:
// HMAC-SHA256(secret, "berth-l2-heartbeat/v2/" + node). A message signed
// for one node name does not verify under another's key, so a name cannot
// be changed in flight or a heartbeat made with the shared secret alone.
func NodeKey(secret []byte, node string) []byte {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(nodeKeyPrefix + node))
	return mac.Sum(nil)
}

// heartbeat is one decoded heartbeat, its signature not yet checked.
type heartbeat struct {
	version int
	leaving bool
	// time is the sender's clock, Unix nanoseconds.
	time   int64
	name   string
	groups []uint64
	// signed is the part the HMAC covers; sum the HMAC.
	signed, sum []byte
}

// ErrBadHeartbeat is wrapped by every refusal of a heartbeat.
var ErrBadHeartbeat = errors.New("heartbeat refused")

// Reasons a heartbeat is refused: the label of
// berth_agent_l2_heartbeats_refused_total.
const (
	RefusedMalformed = "malformed"
	RefusedNotPeer   = "not_peer"
	RefusedSignature = "signature"
	RefusedStale     = "stale"
	RefusedReplay    = "replay"
)

// HeartbeatRefusal is a refused heartbeat: why (one of the Refused*
// reasons) and what was wrong. It wraps ErrBadHeartbeat.
type HeartbeatRefusal struct {
	Reason string
	Detail string
}

func (e *HeartbeatRefusal) Error() string { return ErrBadHeartbeat.Error() + ": " + e.Detail }

// Unwrap makes errors.Is(err, ErrBadHeartbeat) hold.
func (e *HeartbeatRefusal) Unwrap() error { return ErrBadHeartbeat }

func refuse(reason, format string, args ...any) error {
	return &HeartbeatRefusal{Reason: reason, Detail: fmt.Sprintf(format, args...)}
}

// encodeHeartbeat lays out a heartbeat of the given version and signs it
// with key.
func encodeHeartbeat(version int, key []byte, leaving bool, t int64, name string, groups []uint64) []byte {
	b := make([]byte, 2, headerLen+len(name)+2+8*len(groups)+macLen)
	b[0] = byte(version)
	if leaving {
		b[1] = flagLeaving
	}
	b = binary.BigEndian.AppendUint64(b, uint64(t))
	b = append(b, byte(len(name)))
	b = append(b, name...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(groups)))
	for _, g := range groups {
		b = binary.BigEndian.AppendUint64(b, g)
	}
	mac := hmac.New(sha256.New, key)
	mac.Write(b)
	return mac.Sum(b)
}

// decodeHeartbeat reads the layout of b (versions 1 and 2); it does not
// check the signature.
func decodeHeartbeat(b []byte) (heartbeat, error) {
	var h heartbeat
	if len(b) < headerLen+1+2+macLen {
		return h, refuse(RefusedMalformed, "%d bytes is too short", len(b))
	}
	if len(b) > MaxHeartbeatSize {
		return h, refuse(RefusedMalformed, "more than %d bytes, the largest a heartbeat can be", MaxHeartbeatSize)
	}
	h.signed, h.sum = b[:len(b)-macLen], b[len(b)-macLen:]
	body := h.signed
	h.version = int(body[0])
	if h.version != heartbeatV1 && h.version != heartbeatV2 {
		return h, refuse(RefusedMalformed, "version %d", h.version)
	}
	h.leaving = body[1]&flagLeaving != 0
	h.time = int64(binary.BigEndian.Uint64(body[2:10]))
	n := int(body[10])
	if n == 0 || len(body) < headerLen+n+2 {
		return h, refuse(RefusedMalformed, "name length %d in %d bytes", n, len(body))
	}
	h.name = string(body[headerLen : headerLen+n])
	rest := body[headerLen+n:]
	count := int(binary.BigEndian.Uint16(rest))
	if count > MaxGroups || len(rest) != 2+8*count {
		return h, refuse(RefusedMalformed, "%d groups in %d bytes", count, len(rest)-2)
	}
	h.groups = make([]uint64, count)
	for i := range h.groups {
		h.groups[i] = binary.BigEndian.Uint64(rest[2+8*i:])
	}
	return h, nil
}

// signedBy reports whether h's HMAC verifies under key.
func (h *heartbeat) signedBy(key []byte) bool {
	mac := hmac.New(sha256.New, key)
	mac.Write(h.signed)
	return hmac.Equal(h.sum, mac.Sum(nil))
}
