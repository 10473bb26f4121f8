import sys

sys.exit(print("error: moved: python -m fidelity", *sys.argv[1:], file=sys.stderr) or 2)
