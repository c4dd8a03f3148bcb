package node

import (
	"slices"
	"strings"
	"testing"
)

const testSecret = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

// Two peer IDs for the addresses of tokens.
const (
	fuzzPusher   = "12D3KooWJ34PJdu1kw5pBYKcPoGnuu4pfUDwK92YBa17Pvp2a8j6"
	fuzzReceiver = "12D3KooWNBuiMU3cTFGSu63EdCyitGCDrPE9gQNvn1SsEviHAQTk"
)

func TestJoinTokenRoundTrip(t *testing.T) {
	addrs := []string{
		"/ip4/127.0.0.1/tcp/4001/p2p/" + fuzzPusher,
		"/ip6/::1/udp/4001/quic-v1/p2p/" + fuzzPusher,
	}
	tok, err := JoinToken(testSecret+"\n", addrs)
	if err != nil {
		t.Fatal(err)
	}
	secret, got, err := ParseJoinToken(" " + tok + "\n")
	if err != nil || secret != testSecret || !slices.Equal(got, addrs) {
		t.Fatalf("ParseJoinToken(%q) = %q, %v, %v; want the secret and %v", tok, secret, got, err, addrs)
	}
	for name, bad := range map[string]string{
		"no prefix":      strings.TrimPrefix(tok, joinTokenPrefix),
		"no address":     joinTokenPrefix + testSecret + ":",
		"short secret":   joinTokenPrefix + "0011:" + addrs[0],
		"no peer ID":     joinTokenPrefix + testSecret + ":/ip4/127.0.0.1/tcp/4001",
		"not an address": joinTokenPrefix + testSecret + ":hello",
	} {
		if _, _, err := ParseJoinToken(bad); err == nil {
			t.Errorf("%s: %q accepted", name, bad)
		}
	}
	if _, err := JoinToken(testSecret, nil); err == nil {
		t.Error("a token without addresses was made")
	}
}

// FuzzParseJoinToken: a token pasted by an operator is outside input; the
// parser returns an error or a valid secret and addresses, never panics.
func FuzzParseJoinToken(f *testing.F) {
	f.Add(joinTokenPrefix + testSecret + ":/ip4/127.0.0.1/tcp/4001/p2p/" + fuzzPusher)
	f.Add(joinTokenPrefix + testSecret + ":/ip4/1.2.3.4/tcp/1/p2p/" + fuzzPusher + ",/dns/x/tcp/1/p2p/" + fuzzReceiver)
	f.Add(joinTokenPrefix + ":")
	f.Fuzz(func(t *testing.T, tok string) {
		secret, addrs, err := ParseJoinToken(tok)
		if err != nil {
			return
		}
		if _, err := ParseClusterSecret(secret); err != nil {
			t.Fatalf("accepted secret %q: %v", secret, err)
		}
		if len(addrs) == 0 {
			t.Fatal("accepted a token without addresses")
		}
		again, err := JoinToken(secret, addrs)
		if err != nil {
			t.Fatalf("the parsed token does not make a token again: %v", err)
		}
		if s2, a2, err := ParseJoinToken(again); err != nil || s2 != secret || !slices.Equal(a2, addrs) {
			t.Fatalf("round trip of %q: %q %v %v", again, s2, a2, err)
		}
	})
}
