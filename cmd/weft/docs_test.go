package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// codeBlock returns the first fenced block of the given language after heading in a
// Markdown file.
func codeBlock(t *testing.T, doc, heading, lang string) string {
	t.Helper()
	i := strings.Index(doc, heading)
	if i < 0 {
		t.Fatalf("no %q in the document", heading)
	}
	rest := doc[i:]
	j := strings.Index(rest, "```"+lang+"\n")
	if j < 0 {
		t.Fatalf("no %s block after %q", lang, heading)
	}
	rest = rest[j+len(lang)+4:]
	return rest[:strings.Index(rest, "```")]
}

// TestDistributedDocs: the Indexed Job manifest and the sbatch script of docs/distributed.md
// are what they claim: the manifest is a valid Indexed Job whose WEFT_PARTS is its
// completions, the script an array of as many tasks; and their weft command, run with each
// index's environment, makes each part in turn (every part of the work, once).
func TestDistributedDocs(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(moduleRoot(t), "docs", "distributed.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	var job struct {
		APIVersion string `yaml:"apiVersion"`
		Kind       string `yaml:"kind"`
		Spec       struct {
			CompletionMode string `yaml:"completionMode"`
			Completions    int    `yaml:"completions"`
			Parallelism    int    `yaml:"parallelism"`
			Template       struct {
				Spec struct {
					RestartPolicy string `yaml:"restartPolicy"`
					Containers    []struct {
						Command []string `yaml:"command"`
						Env     []struct {
							Name  string `yaml:"name"`
							Value string `yaml:"value"`
						} `yaml:"env"`
					} `yaml:"containers"`
				} `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	if err := yaml.Unmarshal([]byte(codeBlock(t, doc, "## Kubernetes", "yaml")), &job); err != nil {
		t.Fatalf("the manifest: %v", err)
	}
	s := job.Spec
	if job.APIVersion != "batch/v1" || job.Kind != "Job" || s.CompletionMode != "Indexed" || s.Completions < 2 || s.Template.Spec.RestartPolicy != "Never" || len(s.Template.Spec.Containers) != 1 {
		t.Fatalf("not an Indexed Job: %+v", job)
	}
	c := s.Template.Spec.Containers[0]
	parts := ""
	for _, e := range c.Env {
		if e.Name == "WEFT_PARTS" {
			parts = e.Value
		}
	}
	if parts != strconv.Itoa(s.Completions) {
		t.Fatalf("WEFT_PARTS %q, completions %d", parts, s.Completions)
	}
	if len(c.Command) < 3 || c.Command[0] != "weft" || c.Command[1] != "run" {
		t.Fatalf("command %v", c.Command)
	}

	script := codeBlock(t, doc, "## Slurm", "bash")
	m := regexp.MustCompile(`(?m)^#SBATCH --array=(\d+)-(\d+)$`).FindStringSubmatch(script)
	line := regexp.MustCompile(`(?m)^srun weft (.*)$`).FindStringSubmatch(script)
	if m == nil || line == nil {
		t.Fatalf("the script has no --array=A-B or no srun weft line:\n%s", script)
	}
	lo, _ := strconv.Atoi(m[1])
	hi, _ := strconv.Atoi(m[2])

	// Run both commands' arguments on a recipe of 4 outputs, as a dry run, with each index's
	// environment.
	dir := t.TempDir()
	gb, gt := genPair(t, dir, true)
	rec := filepath.Join(dir, "sweep.yaml")
	writeText(t, rec, fmt.Sprintf(`inputs: {base: %q, tuned: %q}
steps:
  - op: blend
    inputs: [base, tuned]
    alpha: {sweep: [0.1, 0.3, 0.5, 0.7, 0.9, 1.1]}
outputs:
  - path: out/b-{alpha}.gguf
`, gb, gt))
	args := func(cmd []string) []string {
		out := []string{"run", rec}
		for _, a := range cmd {
			if !strings.HasSuffix(a, ".yaml") && !strings.HasPrefix(a, "$") && !strings.HasPrefix(a, `"$`) && a != "--threads" {
				out = append(out, a)
			}
		}
		return append(out, "--dry-run")
	}
	check := func(name string, n int, env func(i int) map[string]string, cmd []string) {
		t.Helper()
		defer func() { getenv = os.Getenv }()
		written := map[int]int{}
		for i := 0; i < n; i++ {
			e := env(i)
			getenv = func(k string) string { return e[k] }
			out := mustCLI(t, args(cmd)...)
			cur := 0
			for _, l := range strings.Split(out, "\n") {
				if _, err := fmt.Sscanf(l, "output %d/6", &cur); err == nil {
					continue
				}
				if strings.Contains(l, fmt.Sprintf("part %d of %d writes all of it", i, n)) {
					written[cur]++
				}
			}
		}
		for k := 1; k <= 6; k++ {
			if written[k] != 1 {
				t.Fatalf("%s: output %d is written by %d parts", name, k, written[k])
			}
		}
	}
	check("Indexed Job", s.Completions, func(i int) map[string]string {
		return map[string]string{"JOB_COMPLETION_INDEX": strconv.Itoa(i), "WEFT_PARTS": parts}
	}, c.Command[2:])
	check("job array", hi-lo+1, func(i int) map[string]string {
		return map[string]string{"SLURM_ARRAY_TASK_ID": strconv.Itoa(lo + i), "SLURM_ARRAY_TASK_MIN": strconv.Itoa(lo), "SLURM_ARRAY_TASK_COUNT": strconv.Itoa(hi - lo + 1)}
	}, strings.Fields(line[1])[2:])
}
