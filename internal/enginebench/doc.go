// Package enginebench measures the write engine as users run it: the weft binary (and, for
// writes of several outputs before the command line has them, a small driver of
// ckpt.ExecuteMany) as child processes on synthetic checkpoints, with wall time, CPU time and
// peak RSS, beside an I/O floor measured in the same run. The benchmarks are in the test file;
// BENCHMARKS.md gives the commands and the figures.
package enginebench
