"""Special-value input generators (ties, NaN, Inf, known means...): see poolconform.inputs."""
