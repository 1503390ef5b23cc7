"""Training beyond the plain loop: data parallelism under torchrun, distillation from a teacher, weight averaging."""
