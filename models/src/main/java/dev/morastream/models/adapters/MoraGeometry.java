package dev.morastream.models.adapters;

/**
 * The fixed (non-trainable) shape of a MoRA layer: {@code R}, the groups {@code G}, padding, and
 * the explicit update {@code dW} that a given square matrix {@code M} makes, computed with plain
 * loops straight from MORA_SPEC.md. The NDArray forward pass is checked against this, and merge
 * adds this {@code dW} to the base weight.
 *
 * @param variant compression/decompression
 * @param dIn input width of the wrapped layer
 * @param dOut output width of the wrapped layer
 * @param rank R, the side of M
 */
public record MoraGeometry(MoraVariant variant, int dIn, int dOut, int rank) {

    /**
     * {@code R = floor(sqrt((d_in + d_out) * r) + 0.5)}, made even for rotation/decoupling, at
     * least 1 (2 when even).
     */
    public static int squareRank(int dIn, int dOut, int r, MoraVariant v) {
        int big = (int) Math.floor(Math.sqrt((double) (dIn + dOut) * r) + 0.5);
        if (v.evenRank()) {
            big = 2 * (big / 2);
            return Math.max(2, big);
        }
        return Math.max(1, big);
    }

    public static MoraGeometry of(MoraVariant v, int dIn, int dOut, int r) {
        return new MoraGeometry(v, dIn, dOut, squareRank(dIn, dOut, r, v));
    }

    /** Number of groups of the wrap-padded input, {@code ceil(d_in / R)}. */
    public int groups() {
        return (dIn + rank - 1) / rank;
    }

    /** Trainable numbers: {@code R * R}. */
    public long trainableParameters() {
        return (long) rank * rank;
    }

    /** Rotation angle frequency {@code theta_k = 10000^(-2k/R)}, {@code k < R/2}. */
    public double theta(int k) {
        return Math.pow(10000.0, -2.0 * k / rank);
    }

    /** Contiguous group of input/output index {@code i} out of {@code d} (type 2). */
    int contiguousGroup(int i, int d) {
        int n = d / rank;
        int rem = d % rank;
        int big = rem * (n + 1); // first rem groups hold n + 1
        if (i < big) {
            return i / (n + 1);
        }
        return rem + (i - big) / n;
    }

    /**
     * The explicit update {@code dW} ({@code d_out x d_in}, row-major) of square matrix {@code m}
     * ({@code R x R}, row-major, {@code m = M c} convention).
     */
    public float[] delta(float[] m) {
        int r = rank;
        double[] dw = new double[dOut * dIn];
        switch (variant) {
            case SHARING, TYPE3, TYPE4, CONTIGUOUS -> {
                boolean groupedIn = variant == MoraVariant.CONTIGUOUS || variant == MoraVariant.TYPE3;
                boolean groupedOut = variant == MoraVariant.CONTIGUOUS || variant == MoraVariant.TYPE4;
                for (int o = 0; o < dOut; o++) {
                    int row = groupedOut ? contiguousGroup(o, dOut) : o % r;
                    if (groupedIn) {
                        for (int i = 0; i < dIn; i++) {
                            dw[o * dIn + i] += m[row * r + contiguousGroup(i, dIn)];
                        }
                    } else {
                        // sharing: x~[p] = x[p mod d_in], c_j = sum over p with p mod R == j
                        int gr = groups() * r;
                        for (int p = 0; p < gr; p++) {
                            dw[o * dIn + (p % dIn)] += m[row * r + (p % r)];
                        }
                    }
                }
            }
            case ROTATION, DECOUPLING -> {
                int g = groups();
                int gr = g * r;
                int h = r / 2;
                for (int o = 0; o < dOut; o++) {
                    int z = o % gr; // z[:d_out] when G*R >= d_out, else tiled
                    int blk = z / r;
                    int j = z % r;
                    for (int l = 0; l < r; l++) {
                        double mjl = m[j * r + l];
                        int k = l < h ? l : l - h;
                        double phi = variant == MoraVariant.ROTATION ? blk * theta(k) : 0.0;
                        double cos = Math.cos(phi);
                        double sin = Math.sin(phi);
                        int self = (blk * r + l) % dIn;
                        dw[o * dIn + self] += mjl * cos;
                        if (l < h) { // a[l] = b[l] cos - b[l+h] sin
                            dw[o * dIn + (blk * r + l + h) % dIn] -= mjl * sin;
                        } else { // a[l] = b[l] cos + b[l-h] sin
                            dw[o * dIn + (blk * r + l - h) % dIn] += mjl * sin;
                        }
                    }
                }
            }
            case TRUNCATION -> {
                for (int o = 0; o < Math.min(r, dOut); o++) {
                    for (int i = 0; i < Math.min(r, dIn); i++) {
                        dw[o * dIn + i] = m[o * r + i];
                    }
                }
            }
        }
        float[] out = new float[dw.length];
        for (int i = 0; i < dw.length; i++) {
            out[i] = (float) dw[i];
        }
        return out;
    }
}
