// Package strictcbor holds the CBOR modes of every decoder of outside
// input (block map nodes, catalog entries, exchange messages): encoding is
// RFC 8949 core deterministic, and decoding accepts nothing else (no
// duplicate keys, indefinite lengths, tags or unknown fields) within size
// bounds the caller picks.
package strictcbor

import (
	"fmt"

	"github.com/fxamacker/cbor/v2"
)

// EncMode returns the core deterministic encoding mode.
func EncMode() cbor.EncMode {
	em, err := cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		panic(fmt.Sprintf("cbor encode mode: %v", err)) // fixed options: cannot fail
	}
	return em
}

// DecMode returns a strict decoding mode allowing arrays of up to
// maxArray elements, maps of up to maxPairs pairs and 4 levels of nesting.
func DecMode(maxArray, maxPairs int) cbor.DecMode {
	dm, err := cbor.DecOptions{
		MaxNestedLevels:   4,
		MaxArrayElements:  maxArray,
		MaxMapPairs:       maxPairs,
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		IndefLength:       cbor.IndefLengthForbidden,
		TagsMd:            cbor.TagsForbidden,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
	}.DecMode()
	if err != nil {
		panic(fmt.Sprintf("cbor decode mode: %v", err)) // bounds out of range: a programming error
	}
	return dm
}
