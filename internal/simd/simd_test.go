package simd

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

func TestDisabledByEnv(t *testing.T) {
	for v, want := range map[string]bool{"": false, "0": false, "1": true, "yes": true, "true": true} {
		if got := disabledByEnv(v); got != want {
			t.Errorf("WEFT_NOSIMD=%q: disabled %v, want %v", v, got, want)
		}
	}
}

func TestSetAndModes(t *testing.T) {
	was := Set(false)
	defer Set(was)
	if AVX2() {
		t.Fatal("Set(false) left the kernels on")
	}
	Set(true)
	if AVX2() != CPUHasAVX2() {
		t.Fatalf("Set(true): AVX2() = %v on a CPU with AVX2 = %v", AVX2(), CPUHasAVX2())
	}
	m := Modes()
	if m[0].Name != "scalar" || m[0].On || len(m) != map[bool]int{false: 1, true: 2}[CPUHasAVX2()] {
		t.Fatalf("Modes() = %+v", m)
	}
}

// TestEnvironment runs this test binary again with WEFT_NOSIMD set and unset and checks
// what AVX2 reports at start-up.
func TestEnvironment(t *testing.T) {
	if os.Getenv("WEFT_SIMD_CHILD") == "1" {
		if AVX2() {
			os.Stdout.WriteString("avx2=on\n")
		} else {
			os.Stdout.WriteString("avx2=off\n")
		}
		return
	}
	for _, c := range []struct {
		env  string
		want string
	}{{"WEFT_NOSIMD=1", "avx2=off"}, {"WEFT_NOSIMD=0", map[bool]string{true: "avx2=on", false: "avx2=off"}[CPUHasAVX2()]}} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestEnvironment$")
		cmd.Env = append(os.Environ(), "WEFT_SIMD_CHILD=1", c.env)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s: %v", c.env, err)
		}
		if !strings.Contains(string(out), c.want+"\n") {
			t.Errorf("%s: child printed %q, want %s", c.env, out, c.want)
		}
	}
}
