"""``python -m crossrec ...`` (and ``torchrun --nproc_per_node N -m crossrec train ...``)."""

from crossrec.cli import main

if __name__ == "__main__":
    main()
