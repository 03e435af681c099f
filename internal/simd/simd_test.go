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

func TestCapByEnv(t *testing.T) {
	for v, want := range map[string]Level{"": LevelAVX512, "avx512": LevelAVX512, "AVX-512": LevelAVX512, "avx2": LevelAVX2, " AVX2 ": LevelAVX2,
		"scalar": LevelScalar, "none": LevelScalar, "sse": LevelScalar} {
		if got := capByEnv(v); got != want {
			t.Errorf("WEFT_SIMD=%q: cap %v, want %v", v, got, want)
		}
	}
}

func TestSetAndModes(t *testing.T) {
	was := SetLevel(LevelScalar)
	defer SetLevel(was)
	if AVX2() || AVX512() || Current() != LevelScalar {
		t.Fatal("SetLevel(LevelScalar) left kernels on")
	}
	if got := SetLevel(LevelAVX512); got != LevelScalar {
		t.Fatalf("SetLevel returned %v, want the previous level scalar", got)
	}
	if Current() != CPULevel() || AVX2() != CPUHasAVX2() || AVX512() != CPUHasAVX512() {
		t.Fatalf("SetLevel(LevelAVX512) on a CPU at %v: level %v, LevelAVX2 %v, LevelAVX512 %v", CPULevel(), Current(), AVX2(), AVX512())
	}
	SetLevel(LevelAVX2)
	if Current() != min(LevelAVX2, CPULevel()) || AVX512() {
		t.Fatalf("SetLevel(LevelAVX2) on a CPU at %v: level %v", CPULevel(), Current())
	}
	SetLevel(Level(-3))
	if Current() != LevelScalar {
		t.Fatalf("SetLevel(-3): level %v, want scalar", Current())
	}
	if Set(true) {
		t.Fatal("Set(true) after scalar reported that the kernels were on")
	}
	if Current() != onLevel || !Set(false) == CPUHasAVX2() || Current() != LevelScalar {
		t.Fatalf("Set(true) then Set(false): level %v, CPU at %v", Current(), CPULevel())
	}
	m := Modes()
	if len(m) != int(CPULevel())+1 {
		t.Fatalf("Modes() = %+v on a CPU at %v", m, CPULevel())
	}
	for i, x := range m {
		if x.Level != Level(i) || x.Name != Level(i).String() || x.On != (i > 0) {
			t.Errorf("Modes()[%d] = %+v", i, x)
		}
	}
}

// TestEnvironment runs this test binary again with WEFT_NOSIMD and WEFT_SIMD set in
// various ways and checks the level it reports at start-up.
func TestEnvironment(t *testing.T) {
	if os.Getenv("WEFT_SIMD_CHILD") == "1" {
		os.Stdout.WriteString("level=" + Current().String() + "\n")
		return
	}
	top := CPULevel().String()
	for _, c := range []struct {
		env  []string
		want string
	}{
		{[]string{"WEFT_NOSIMD=1"}, "scalar"},
		{[]string{"WEFT_NOSIMD=1", "WEFT_SIMD=avx512"}, "scalar"},
		{[]string{"WEFT_NOSIMD=0"}, top},
		{[]string{"WEFT_NOSIMD=", "WEFT_SIMD="}, top},
		{[]string{"WEFT_SIMD=avx2"}, min(LevelAVX2, CPULevel()).String()},
		{[]string{"WEFT_SIMD=AVX512"}, top},
		{[]string{"WEFT_SIMD=scalar"}, "scalar"},
		{[]string{"WEFT_SIMD=bogus"}, "scalar"},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestEnvironment$")
		cmd.Env = append(os.Environ(), "WEFT_NOSIMD=", "WEFT_SIMD=", "WEFT_SIMD_CHILD=1")
		cmd.Env = append(cmd.Env, c.env...)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%v: %v", c.env, err)
		}
		if !strings.Contains(string(out), "level="+c.want+"\n") {
			t.Errorf("%v: child printed %q, want level=%s", c.env, out, c.want)
		}
	}
}
