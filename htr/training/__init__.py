"""Training beyond one process: data parallelism under torchrun, distillation from a teacher."""
