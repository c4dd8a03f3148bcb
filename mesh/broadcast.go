package mesh

import (
	"bytes"

	"github.com/hashicorp/memberlist"
)

// maxBroadcast is the largest application broadcast: gossip packets carry
// gossipPacketSize bytes, and a broadcast must share one with memberlist's
// own messages. Larger state belongs in StateDelegate.LocalState, which
// travels by push-pull over a stream.
const maxBroadcast = gossipPacketSize / 2

// Broadcast queues msg for delivery to every member's StateDelegate.NotifyMsg
// by gossip: best effort, retransmitted to about RetransmitMult·log(N)
// members, usually everywhere within a few gossip intervals. A message
// larger than maxBroadcast is dropped and logged. msg is copied.
func (m *Mesh) Broadcast(msg []byte) {
	if len(msg) > maxBroadcast {
		m.log.Error("broadcast too large, dropped", "bytes", len(msg), "limit", maxBroadcast)
		return
	}
	m.broadcasts.QueueBroadcast(broadcast(bytes.Clone(msg)))
}

// broadcast is one application message in the transmit queue. Every
// message stands alone, so none invalidates another.
type broadcast []byte

var _ memberlist.Broadcast = broadcast(nil)

func (b broadcast) Invalidates(memberlist.Broadcast) bool { return false }
func (b broadcast) Message() []byte                       { return b }
func (b broadcast) Finished()                             {}
