"""Export tvboptim's dk_average workload data to an ``.npz`` for fitbridge's benchmark.

Run this with the PEER interpreter (the environment where tvboptim is installed), not with
fitbridge's own environment::

    /work/peer/bin/python benchmarks/_peer_data.py /tmp/dk_average.npz

It writes exactly the arrays the peer script ``peer_tvboptim_rww.py`` uses:

- ``weights``: structural weights ``[84, 84]``, divided by their maximum (as in the peer
  script and the tvboptim RWW tutorial);
- ``weights_raw``: the same weights before normalisation;
- ``lengths``: tract lengths in mm (unused by the no-delay workload, kept for completeness);
- ``fc``: the empirical FC, ``load_functional_connectivity(name="dk_average")``;
- ``region_labels``: region acronyms (unicode strings, no pickle needed);
- ``source``, ``tvboptim_version``, ``licence``: provenance strings.

The data belong to tvboptim (EUPL-1.2, the licence of the whole tvboptim distribution; the
package ships no separate data licence). fitbridge therefore does not commit this file: the
benchmark regenerates it from the installed peer package at run time.
"""

import sys

import numpy as np


def export(path):
    import tvboptim
    from tvboptim.data import load_functional_connectivity, load_structural_connectivity

    weights, lengths, labels = load_structural_connectivity(name="dk_average")
    weights = np.asarray(weights, dtype=np.float64)
    fc = np.asarray(load_functional_connectivity(name="dk_average"), dtype=np.float64)
    np.savez(
        path,
        weights=weights / np.max(weights),
        weights_raw=weights,
        lengths=np.asarray(lengths, dtype=np.float64),
        fc=fc,
        region_labels=np.asarray([str(x) for x in labels], dtype=str),
        source=np.asarray("tvboptim.data dk_average (structural + functional)"),
        tvboptim_version=np.asarray(str(getattr(tvboptim, "__version__", "unknown"))),
        licence=np.asarray("EUPL-1.2 (tvboptim distribution licence)"),
    )
    return weights.shape[0]


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0] in ("-h", "--help"):
        print("usage: PEER_PYTHON _peer_data.py OUT.npz", file=sys.stderr)
        return 2
    try:
        n = export(argv[0])
    except ImportError as e:
        print(f"tvboptim is not importable in this interpreter ({sys.executable}): {e}",
              file=sys.stderr)
        return 1
    print(f"wrote {argv[0]} ({n} regions)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
