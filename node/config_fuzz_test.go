package node

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// FuzzLoadConfig loads a config.json an operator may have edited by hand:
// whatever it holds, loading does not panic, a config loaded validates,
// and saving it and loading again gives it back.
func FuzzLoadConfig(f *testing.F) {
	f.Add([]byte(`{"site":"default","listen":["/ip4/0.0.0.0/tcp/4001","/ip4/0.0.0.0/udp/4001/quic-v1"],"nbd":"127.0.0.1:10809","http":"127.0.0.1:7070"}`))
	f.Add([]byte(`{"site":"b","listen":["/ip4/127.0.0.2/tcp/0"],"nbd":"","http":"","nbd_tls_cert":"c.pem","nbd_tls_key":"k.pem","nbd_tls_required":true,` +
		`"block_cache_bytes":1048576,"heal_bandwidth":1000,"heal_concurrency":4,"heal_interval":60000000000,"probe_interval":2000000000,"suspicion_mult":6,"transfer_bandwidth":1}`))
	f.Add([]byte(`{"site":"a/b"}`))
	f.Add([]byte(`{"nbd":"127.0.0.1:0"}`))
	f.Add([]byte(`{"listen":["/ip4/0.0.0.0/tcp/99999"]}`))
	f.Add([]byte(`{"probe_interval":-1,"suspicion_mult":0}`))
	f.Add([]byte(`{"nbd_tls_cert":"c.pem"}`))
	f.Add([]byte(`{"site":"default"`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		home := t.TempDir()
		if err := os.WriteFile(filepath.Join(home, ConfigFile), b, 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, err := Load(home)
		if err != nil {
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("loaded config does not validate: %v", err)
		}
		if err := cfg.Save(); err != nil {
			t.Fatal(err)
		}
		again, err := Load(home)
		if err != nil {
			t.Fatalf("saved config does not load: %v", err)
		}
		cfg.Logger, again.Logger = nil, nil
		if !reflect.DeepEqual(cfg, again) {
			t.Fatalf("config round trip:\n got %+v\nwant %+v", again, cfg)
		}
	})
}
