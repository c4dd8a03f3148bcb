package node

import (
	"errors"
	"fmt"
	"net/http"
	"testing"
)

// A peer ID in its base58 form (shape only).
const (
	testOwner = "12D3KooWBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"
)

// TestNotOwnerError: the cluster's refusal (its text is checked by the
// cluster's TestCheckOwner) maps to 409 not_owner, and the client's error
// matches ErrNotOwner.
func TestNotOwnerError(t *testing.T) {
	err := fmt.Errorf("disk %q: owned by %s: %w", "vm", testOwner, ErrNotOwner)
	status, code := classify(err)
	if status != http.StatusConflict || code != codeNotOwner {
		t.Errorf("classify: got %d %s, want 409 %s", status, code, codeNotOwner)
	}
	if api := (&APIError{Status: status, Code: code, Message: err.Error()}); !errors.Is(api, ErrNotOwner) {
		t.Errorf("APIError %+v does not match ErrNotOwner", api)
	}
}
