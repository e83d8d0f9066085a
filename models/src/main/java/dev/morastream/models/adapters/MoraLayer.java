package dev.morastream.models.adapters;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDArrays;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.Shape;
import ai.djl.nn.core.Linear;
import dev.morastream.models.llama.Tensors;
import java.util.Map;

/**
 * MoRA on one linear layer: {@code decompress(M compress(x))} with one trainable square matrix
 * {@code M} ({@code R x R}, fp32, zero-initialised, no alpha scaling), every variant of
 * MORA_SPEC.md. Every op is written input-first so that results land in the step's manager.
 */
public final class MoraLayer implements AdapterLayer {
    private final String module;
    private final MoraGeometry geo;
    private final NDArray m; // (R, R), trainable
    private final NDArray cos; // (G, R) rotation tables, null unless rotation
    private final NDArray sin; // (G, R)

    public MoraLayer(String module, MoraGeometry geo, NDManager manager) {
        this.module = module;
        this.geo = geo;
        int r = geo.rank();
        this.m = manager.zeros(new Shape(r, r));
        this.m.setName(module + ".mora_M");
        if (geo.variant() == MoraVariant.ROTATION) {
            int g = geo.groups();
            int h = r / 2;
            float[] c = new float[g * r];
            float[] s = new float[g * r];
            for (int b = 0; b < g; b++) {
                for (int k = 0; k < h; k++) {
                    double phi = b * geo.theta(k);
                    c[b * r + k] = (float) Math.cos(phi);
                    c[b * r + k + h] = (float) Math.cos(phi);
                    s[b * r + k] = (float) Math.sin(phi);
                    s[b * r + k + h] = (float) Math.sin(phi);
                }
            }
            this.cos = Tensors.owned(manager, c, new Shape(g, r));
            this.sin = Tensors.owned(manager, s, new Shape(g, r));
        } else {
            this.cos = null;
            this.sin = null;
        }
    }

    public MoraGeometry geometry() {
        return geo;
    }

    /** The square matrix M {@code (R, R)}. */
    public NDArray matrix() {
        return m;
    }

    @Override
    public String module() {
        return module;
    }

    @Override
    public int dIn() {
        return geo.dIn();
    }

    @Override
    public int dOut() {
        return geo.dOut();
    }

    @Override
    public Map<String, NDArray> parameters() {
        return Map.of("lora_A.weight", m);
    }

    @Override
    public void zero() {
        m.subi(m);
    }

    @Override
    public float[] explicitDelta() {
        return geo.delta(m.toFloatArray());
    }

    @Override
    public NDArray delta(NDArray x) {
        int r = geo.rank();
        return switch (geo.variant()) {
            case SHARING -> tile(Linear.linear(shareCompress(x), m).singletonOrThrow(), geo.dOut());
            case CONTIGUOUS -> interleave(Linear.linear(groupCompress(x), m).singletonOrThrow());
            case TYPE3 -> tile(Linear.linear(groupCompress(x), m).singletonOrThrow(), geo.dOut());
            case TYPE4 -> interleave(Linear.linear(shareCompress(x), m).singletonOrThrow());
            case ROTATION, DECOUPLING -> {
                long n = x.getShape().get(0);
                int g = geo.groups();
                NDArray b = wrap(x).reshape(n, g, r); // (N, G, R)
                if (geo.variant() == MoraVariant.ROTATION) {
                    b = b.mul(cos).add(rotateHalf(b, r).mul(sin)); // (N, G, R)
                }
                NDArray z = Linear.linear(b, m).singletonOrThrow().reshape(n, (long) g * r); // (N, G*R)
                yield tile(z, geo.dOut());
            }
            case TRUNCATION -> {
                NDArray c = x.get(new NDIndex(":, :" + Math.min(r, geo.dIn()))); // (N, min(R, d_in))
                if (geo.dIn() < r) {
                    c = NDArrays.concat(new NDList(c, zeros(c, r - geo.dIn())), 1); // (N, R)
                }
                NDArray y = Linear.linear(c, m).singletonOrThrow(); // (N, R)
                if (r >= geo.dOut()) {
                    yield y.get(new NDIndex(":, :" + geo.dOut()));
                }
                yield NDArrays.concat(new NDList(y, zeros(y, geo.dOut() - r)), 1); // (N, d_out)
            }
        };
    }

    /** Wrap-pads {@code (N, d_in)} to {@code (N, G*R)}: {@code x~[p] = x[p mod d_in]}. */
    private NDArray wrap(NDArray x) {
        int need = geo.groups() * geo.rank();
        int have = geo.dIn();
        if (need == have) {
            return x;
        }
        NDList parts = new NDList(x);
        while (have < need) {
            int take = Math.min(geo.dIn(), need - have);
            parts.add(x.get(new NDIndex(":, :" + take)));
            have += take;
        }
        return NDArrays.concat(parts, 1);
    }

    /** Sharing compression: {@code c_j = sum_g x~[g*R + j]}, {@code (N, R)}. */
    private NDArray shareCompress(NDArray x) {
        long n = x.getShape().get(0);
        return wrap(x).reshape(n, geo.groups(), geo.rank()).sum(new int[] {1});
    }

    /** Contiguous-group compression: group sums, first {@code d_in mod R} groups one larger. */
    private NDArray groupCompress(NDArray x) {
        long n = x.getShape().get(0);
        int r = geo.rank();
        int q = geo.dIn() / r;
        int rem = geo.dIn() % r;
        NDList parts = new NDList();
        int big = rem * (q + 1);
        if (rem > 0) {
            parts.add(x.get(new NDIndex(":, :" + big)).reshape(n, rem, q + 1).sum(new int[] {2})); // (N, rem)
        }
        if (q > 0) {
            parts.add(x.get(new NDIndex(":, " + big + ":")).reshape(n, r - rem, q).sum(new int[] {2})); // (N, R-rem)
        } else {
            parts.add(zeros(x, r - rem)); // empty groups
        }
        return parts.size() == 1 ? parts.get(0) : NDArrays.concat(parts, 1);
    }

    /** Tiling decompression: {@code out[o] = y[o mod len]}, {@code (N, d_out)}. */
    private static NDArray tile(NDArray y, int dOut) {
        long len = y.getShape().get(1);
        if (len == dOut) {
            return y;
        }
        if (len > dOut) {
            return y.get(new NDIndex(":, :" + dOut));
        }
        long reps = (dOut + len - 1) / len;
        return y.tile(new long[] {1, reps}).get(new NDIndex(":, :" + dOut));
    }

    /** Repeat-interleave decompression with the contiguous grouping of {@code d_out}. */
    private NDArray interleave(NDArray y) {
        long n = y.getShape().get(0);
        int r = geo.rank();
        int q = geo.dOut() / r;
        int rem = geo.dOut() % r;
        NDList parts = new NDList();
        if (rem > 0) {
            parts.add(y.get(new NDIndex(":, :" + rem)).expandDims(2).broadcast(n, rem, q + 1).reshape(n, (long) rem * (q + 1)));
        }
        if (q > 0) {
            parts.add(y.get(new NDIndex(":, " + rem + ":")).expandDims(2).broadcast(n, r - rem, q).reshape(n, (long) (r - rem) * q));
        }
        return parts.size() == 1 ? parts.get(0) : NDArrays.concat(parts, 1);
    }

    private static NDArray rotateHalf(NDArray b, int r) {
        int h = r / 2;
        NDArray b1 = b.get(new NDIndex("..., :" + h));
        NDArray b2 = b.get(new NDIndex("..., " + h + ":"));
        return NDArrays.concat(new NDList(b2.neg(), b1), -1);
    }

    /** Zeros {@code (N, cols)} in the manager of {@code like}. */
    private static NDArray zeros(NDArray like, int cols) {
        return like.getManager().zeros(new Shape(like.getShape().get(0), cols), like.getDataType(), like.getDevice());
    }
}
