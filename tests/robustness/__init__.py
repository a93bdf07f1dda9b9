"""Bad input, interruption, numerical faults and reproducibility, end to end through the steps."""
