package gatewayapi

import (
	"strings"
	"unicode/utf8"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// condition builds a metav1.Condition without lastTransitionTime (no clock
// here; the controller's meta.SetStatusCondition fills it in).
func condition(typ string, status bool, reason, message string, generation int64) metav1.Condition {
	s := metav1.ConditionFalse
	if status {
		s = metav1.ConditionTrue
	}
	return metav1.Condition{Type: typ, Status: s, Reason: reason, Message: boundMessage(message), ObservedGeneration: generation}
}

func unknownCondition(typ, reason, message string, generation int64) metav1.Condition {
	return metav1.Condition{Type: typ, Status: metav1.ConditionUnknown, Reason: reason, Message: boundMessage(message), ObservedGeneration: generation}
}

// setCondition replaces the condition of the same type, or appends it.
func setCondition(conds []metav1.Condition, c metav1.Condition) []metav1.Condition {
	for i := range conds {
		if conds[i].Type == c.Type {
			conds[i] = c
			return conds
		}
	}
	return append(conds, c)
}

func findCondition(conds []metav1.Condition, typ string) *metav1.Condition {
	for i := range conds {
		if conds[i].Type == typ {
			return &conds[i]
		}
	}
	return nil
}

// maxMessageBytes bounds a condition message Berth writes. The API server
// refuses a status whose condition message passes 32,768 bytes, and a
// Gateway quotes Envoy's NACK in its own condition and in every listener's:
// 8 KiB each keeps 64 listeners' worth well inside a request's size.
const maxMessageBytes = 8192

// truncatedMark ends a message cut by boundMessage.
const truncatedMark = " ... (truncated)"

// boundMessage cuts msg to at most maxMessageBytes bytes, on a UTF-8 rune
// boundary, saying that it did. Invalid UTF-8 (an Envoy message cut short
// by someone else) is replaced, as the API server would store it anyway.
func boundMessage(msg string) string {
	msg = strings.ToValidUTF8(msg, "\uFFFD")
	if len(msg) <= maxMessageBytes {
		return msg
	}
	cut := maxMessageBytes - len(truncatedMark)
	for cut > 0 && !utf8.RuneStart(msg[cut]) {
		cut--
	}
	return msg[:cut] + truncatedMark
}
