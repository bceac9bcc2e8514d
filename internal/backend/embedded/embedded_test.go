package embedded

import (
	"context"
	"errors"
	"strings"
	"testing"

	"visio.dev/operator/internal/backend"
)

func TestEmbeddedName(t *testing.T) {
	if got := New().Name(); got != "embedded" {
		t.Fatalf("Name() = %q, want embedded", got)
	}
}

func TestEmbeddedCreateIsDeterministic(t *testing.T) {
	b := New()
	room := backend.Room{Key: "visio-1234", Name: "ns/room", HostPIN: "482915", GuestPIN: "739164"}
	ref1, err := b.Create(context.Background(), room)
	if err != nil {
		t.Fatal(err)
	}
	ref2, err := b.Create(context.Background(), room)
	if err != nil {
		t.Fatal(err)
	}
	if ref1 != "embedded:visio-1234" || ref2 != ref1 {
		t.Fatalf("Create refs = %q, %q; want embedded:visio-1234 twice", ref1, ref2)
	}
}

func TestEmbeddedCreateWithoutKey(t *testing.T) {
	_, err := New().Create(context.Background(), backend.Room{Name: "ns/room", HostPIN: "482915", GuestPIN: "739164"})
	if err == nil {
		t.Fatal("Create without key succeeded")
	}
	if strings.Contains(err.Error(), "482915") || strings.Contains(err.Error(), "739164") {
		t.Fatalf("error carries a PIN: %v", err)
	}
}

func TestEmbeddedFindNeverFinds(t *testing.T) {
	ref, room, err := New().Find(context.Background(), "visio-1234")
	if !errors.Is(err, backend.ErrNotFound) || ref != "" || room != nil {
		t.Fatalf("Find = %q, %v, %v; want ErrNotFound", ref, room, err)
	}
}

func TestEmbeddedGet(t *testing.T) {
	b := New()
	room, err := b.Get(context.Background(), "embedded:visio-1234", "visio-1234")
	if err != nil || room != nil {
		t.Fatalf("Get(own ref) = %v, %v; want nil room, nil error", room, err)
	}
	if _, err := b.Get(context.Background(), "embedded:visio-9999", "visio-1234"); !errors.Is(err, backend.ErrConflict) {
		t.Errorf("Get(another room's ref) error = %v; want ErrConflict", err)
	}
	for _, ref := range []string{"", "embedded:", "42", "pexip:visio-1234"} {
		if _, err := b.Get(context.Background(), ref, "visio-1234"); !errors.Is(err, backend.ErrNotFound) {
			t.Errorf("Get(%q) error = %v; want ErrNotFound", ref, err)
		}
	}
}

func TestEmbeddedUpdateAndDelete(t *testing.T) {
	b := New()
	ctx := context.Background()
	if err := b.Update(ctx, "embedded:visio-1234", backend.Room{Key: "visio-1234"}); err != nil {
		t.Fatalf("Update(own ref) = %v", err)
	}
	if err := b.Update(ctx, "42", backend.Room{Key: "visio-1234"}); !errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("Update(foreign ref) = %v; want ErrNotFound", err)
	}
	for _, ref := range []string{"embedded:visio-1234", "42", ""} {
		if err := b.Delete(ctx, ref, "visio-1234"); err != nil {
			t.Errorf("Delete(%q) = %v", ref, err)
		}
	}
}

func TestEmbeddedHonoursContext(t *testing.T) {
	b := New()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := b.Create(ctx, backend.Room{Key: "k"}); !errors.Is(err, context.Canceled) {
		t.Errorf("Create = %v", err)
	}
	if _, err := b.Get(ctx, "embedded:k", "k"); !errors.Is(err, context.Canceled) {
		t.Errorf("Get = %v", err)
	}
	if err := b.Delete(ctx, "embedded:k", "k"); !errors.Is(err, context.Canceled) {
		t.Errorf("Delete = %v", err)
	}
}
