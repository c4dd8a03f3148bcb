package node

import "testing"

func TestIQNMapping(t *testing.T) {
	for ref, want := range map[string]string{
		"web":         "iqn.2026-11.io.weft:web",
		"web@monday":  "iqn.2026-11.io.weft:web:monday",
		"debian-12@3": "iqn.2026-11.io.weft:debian-12:3",
		"a.b-c":       "iqn.2026-11.io.weft:a.b-c",
		"Web":         "",
		"my_disk":     "",
	} {
		got, ok := IQN(ref)
		if (want == "") == ok || got != want {
			t.Errorf("IQN(%q) = %q, %v; want %q", ref, got, ok, want)
			continue
		}
		if !ok {
			continue
		}
		back, ok := refOfIQN(got)
		if !ok || back.String() != ref {
			t.Errorf("refOfIQN(%q) = %v, %v; want %s", got, back, ok, ref)
		}
	}
	for _, bad := range []string{"iqn.2026-11.io.weft:", "iqn.2026-11.io.weft:a:b:c", "iqn.2000-01.other:web", "iqn.2026-11.io.weft:we b"} {
		if ref, ok := refOfIQN(bad); ok {
			t.Errorf("refOfIQN(%q) = %v, want no ref", bad, ref)
		}
	}
}
