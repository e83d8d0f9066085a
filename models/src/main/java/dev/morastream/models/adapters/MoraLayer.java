package dev.morastream.models.adapters;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDArrays;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.Shape;
import ai.djl.nn.core.Linear;
import dev.morastream.models.llama.BatchableOp;
import dev.morastream.models.llama.Tensors;
import java.util.List;
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
    private final int usedBlocks; // G': the blocks whose outputs reach d_out (rotation, decoupling)
    private final NDArray cosCol; // (G', R, 1): cos(b theta_{j mod R/2}) by row j of A_b^T, null unless rotation
    private final NDArray sinCol; // (G', R, 1)
    private NDArray fixedAt; // (G', R, R): (M Rot_b)^T of M as it was at freeze(); null until then (rotation only)

    public MoraLayer(String module, MoraGeometry geo, NDManager manager) {
        this.module = module;
        this.geo = geo;
        int r = geo.rank();
        this.m = manager.zeros(new Shape(r, r));
        this.m.setName(module + ".mora_M");
        this.usedBlocks = Math.min(geo.groups(), (geo.dOut() + r - 1) / r);
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
            int used = usedBlocks * r;
            this.cosCol = Tensors.owned(manager, java.util.Arrays.copyOf(c, used), new Shape(usedBlocks, r, 1));
            this.sinCol = Tensors.owned(manager, java.util.Arrays.copyOf(s, used), new Shape(usedBlocks, r, 1));
        } else {
            this.cos = null;
            this.sin = null;
            this.cosCol = null;
            this.sinCol = null;
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
        if (blockMatrices(x.getShape().get(0))) {
            return blockDelta(x);
        }
        return decompress(Linear.linear(compress(x), m).singletonOrThrow());
    }

    /**
     * Whether rotation or decoupling computes the update of {@code n} rows through per-block
     * matrices ({@link #blockDelta}): when there are at least {@code R} rows, so that building the
     * {@code G'} matrices ({@code G' R^3}) costs less than the rows' own product ({@code N G' R^2}).
     */
    boolean blockMatrices(long n) {
        MoraVariant v = geo.variant();
        return (v == MoraVariant.ROTATION || v == MoraVariant.DECOUPLING) && (n >= geo.rank() || fixedAt != null);
    }

    /**
     * For inference: builds rotation's per-block matrices of the current {@code M} once, so that
     * every later update, on any number of rows (decoding: a few), is one batched product instead
     * of the elementwise compression (wrap, rotate-half, two products) of {@link #compress}. {@code
     * M} must not change afterwards: for sets that are only ever read ({@link
     * AdapterFiles#loadDetached}), called before the set is shared. No effect on other variants.
     */
    void freeze() {
        if (cosCol == null || fixedAt != null) {
            return;
        }
        if (m.hasGradient()) {
            throw new IllegalStateException(module + ": a trained M cannot be frozen");
        }
        NDManager owner = m.getManager();
        try (NDManager tmp = owner.newSubManager()) {
            NDArray at = rotatedTransposed(tmp); // (G', R, R)
            at.attach(owner);
            fixedAt = at;
        }
    }

    /**
     * Rotation and decoupling as one batched product: block {@code b} of the wrap-padded input
     * goes through {@code A_b = M Rot_b} (decoupling: {@code M}), built from {@code M} once per
     * call, and only the {@code G'} blocks whose outputs reach {@code d_out} are computed (the
     * others are cut off by the decompression anyway). No rotated copy of the input: a prefix view
     * of {@code x} when those blocks fit in {@code d_in}, else one wrap. Equals {@link #compress},
     * {@code M}, {@link #decompress} within float rounding.
     *
     * @param x {@code (N, d_in)}
     * @return {@code (N, d_out)} in the manager of {@code x}
     */
    NDArray blockDelta(NDArray x) {
        NDManager step = x.getManager();
        long n = x.getShape().get(0);
        int r = geo.rank();
        int g = usedBlocks;
        int need = g * r;
        NDArray c = usedBlockInputs(x); // (N, G', R)
        NDArray y; // (N, G'R)
        if (cosCol == null) {
            y = Linear.linear(c, m).singletonOrThrow().reshape(n, need); // (N, G'R)
        } else {
            NDArray at = fixedAt != null ? fixedAt : rotatedTransposed(step); // (G', R, R): (M Rot_b)^T
            y = c.transpose(1, 0, 2).matMul(at) // (G', N, R)
                    .transpose(1, 0, 2).reshape(n, need); // (N, G'R)
        }
        return tile(y, geo.dOut()); // (N, d_out)
    }

    /**
     * The {@code G'} blocks of the wrap-padded input whose outputs reach {@code d_out}: a prefix
     * view of {@code x (N, d_in)} when they fit in {@code d_in}, else one wrap; {@code (N, G', R)}.
     */
    private NDArray usedBlockInputs(NDArray x) {
        int need = usedBlocks * geo.rank();
        NDArray xt = need == geo.dIn() ? x : need < geo.dIn() ? prefix(x, need) : wrap(x, need); // (N, G'R)
        return xt.reshape(x.getShape().get(0), usedBlocks, geo.rank());
    }

    /**
     * {@code (M Rot_b)^T} for the {@code G'} used blocks, {@code (G', R, R)} in {@code step}, built
     * elementwise: {@code Rot_b} has two nonzeros per column ({@code Rot_b v = v cos(b theta) +
     * rotate_half(v) sin(b theta)}), so row {@code j} of {@code (M Rot_b)^T} is {@code M^T[j] cos_j
     * + M^T[j + R/2] sin_j} for {@code j < R/2} and {@code M^T[j] cos_j - M^T[j - R/2] sin_j}
     * otherwise: {@code 4 G' R^2} flops instead of the {@code 2 G' R^3} of multiplying by the
     * rotation matrices.
     */
    private NDArray rotatedTransposed(NDManager step) {
        int h = geo.rank() / 2;
        NDArray mt = m.transpose(); // (R, R): M^T, a view
        mt.attach(step); // its graph node belongs to the step
        NDList halves = mt.split(new long[] {h}, 0); // (R/2, R) twice, views
        NDArray half = NDArrays.concat(new NDList(halves.get(1), halves.get(0).neg()), 0); // (R, R)
        return mt.mul(cosCol).add(half.mul(sinCol)); // (G', R, R)
    }

    /**
     * The updates of several layers of one geometry on the rows of a batch, for per-row adapter
     * selection: row {@code i} goes through {@code layers.get(rowLayer[i])}, a row with {@code -1}
     * gets zeros. The compression and decompression (the same for every layer of a geometry) run
     * once over all rows; the {@code K} matrices, concatenated once into {@code owner}, make one
     * GEMM of width {@code K*R} whose blocks are masked per row, so the cost barely grows with
     * {@code K}. Row {@code i} equals {@code layers.get(rowLayer[i]).delta} of that row within
     * float rounding (the masked blocks add exact zeros). The matrices are copied: prepare again
     * after they change.
     */
    public static BatchableOp.RowsDelta batched(List<MoraLayer> layers, int[] rowLayer, NDManager owner) {
        MoraLayer first = layers.get(0);
        for (MoraLayer l : layers) {
            if (!l.geo.equals(first.geo)) {
                throw new IllegalArgumentException("one geometry per batched delta: " + first.geo + " and " + l.geo);
            }
        }
        int k = layers.size();
        int r = first.geo.rank();
        int n = rowLayer.length;
        float[] mask = new float[n * k];
        for (int i = 0; i < n; i++) {
            if (rowLayer[i] >= 0) {
                mask[i * k + rowLayer[i]] = 1f;
            }
        }
        if (layers.stream().allMatch(l -> l.fixedAt != null)) {
            return frozenBatched(layers, mask, owner);
        }
        NDList ms = new NDList(k);
        layers.forEach(l -> ms.add(l.m));
        NDArray mcat = k == 1 ? first.m.duplicate() : NDArrays.concat(ms, 0); // (K*R, R), a copy
        mcat.attach(owner);
        boolean blocks = first.geo.variant() == MoraVariant.ROTATION || first.geo.variant() == MoraVariant.DECOUPLING;
        NDArray mk = owner.create(mask, blocks ? new Shape(n, 1, k, 1) : new Shape(n, k, 1)).toDevice(owner.getDevice(), false);
        return x -> {
            if (x.getShape().get(0) != n) {
                throw new IllegalArgumentException("prepared for " + n + " rows, got " + x.getShape());
            }
            NDArray c = first.compress(x); // (N, R) or (N, G, R)
            NDArray z = Linear.linear(c, mcat).singletonOrThrow(); // (N, K*R) or (N, G, K*R)
            NDArray y = blocks
                    ? z.reshape(n, c.getShape().get(1), k, r).mul(mk).sum(new int[] {2}) // (N, G, R)
                    : z.reshape(n, k, r).mul(mk).sum(new int[] {1}); // (N, R)
            return first.decompress(y); // (N, d_out)
        };
    }

    /**
     * {@link #batched} for frozen rotation layers ({@link #freeze}): the used blocks of every row go
     * through the {@code K} versions' per-block matrices side by side, {@code (G', R, K*R)}, in one
     * batched product, whose blocks are masked per row ({@code mask (N*K)}, one-hot or zero).
     */
    private static BatchableOp.RowsDelta frozenBatched(List<MoraLayer> layers, float[] mask, NDManager owner) {
        MoraLayer first = layers.get(0);
        int k = layers.size();
        int r = first.geo.rank();
        int g = first.usedBlocks;
        int n = mask.length / k;
        NDList ats = new NDList(k);
        layers.forEach(l -> ats.add(l.fixedAt));
        NDArray acat = k == 1 ? first.fixedAt.duplicate() : NDArrays.concat(ats, 2); // (G', R, K*R), a copy
        acat.attach(owner);
        NDArray mk = owner.create(mask, new Shape(1, n, k, 1)).toDevice(owner.getDevice(), false);
        return x -> {
            if (x.getShape().get(0) != n) {
                throw new IllegalArgumentException("prepared for " + n + " rows, got " + x.getShape());
            }
            NDArray z = first.usedBlockInputs(x).transpose(1, 0, 2).matMul(acat); // (G', N, K*R)
            NDArray y = z.reshape(g, n, k, r).mul(mk).sum(new int[] {2}); // (G', N, R)
            return tile(y.transpose(1, 0, 2).reshape(n, (long) g * r), first.geo.dOut()); // (N, d_out)
        };
    }

    /**
     * The variant's compression of {@code x (N, d_in)}: {@code (N, R)}, or the (rotated)
     * wrap-padded blocks {@code (N, G, R)} for rotation and decoupling.
     */
    NDArray compress(NDArray x) {
        int r = geo.rank();
        return switch (geo.variant()) {
            case SHARING, TYPE4 -> shareCompress(x);
            case CONTIGUOUS, TYPE3 -> groupCompress(x);
            case ROTATION, DECOUPLING -> {
                long n = x.getShape().get(0);
                NDArray b = wrap(x).reshape(n, geo.groups(), r); // (N, G, R)
                if (geo.variant() == MoraVariant.ROTATION) {
                    b = b.mul(cos).add(rotateHalf(b, r).mul(sin)); // (N, G, R)
                }
                yield b;
            }
            case TRUNCATION -> {
                NDArray c = x.get(new NDIndex(":, :" + Math.min(r, geo.dIn()))); // (N, min(R, d_in))
                if (geo.dIn() < r) {
                    c = NDArrays.concat(new NDList(c, zeros(c, r - geo.dIn())), 1); // (N, R)
                }
                yield c;
            }
        };
    }

    /** The variant's decompression of {@code y}, shaped as {@link #compress} returns: {@code (N, d_out)}. */
    NDArray decompress(NDArray y) {
        int r = geo.rank();
        return switch (geo.variant()) {
            case SHARING, TYPE3 -> tile(y, geo.dOut());
            case CONTIGUOUS, TYPE4 -> interleave(y);
            case ROTATION, DECOUPLING -> tile(y.reshape(y.getShape().get(0), (long) geo.groups() * r), geo.dOut()); // (N, G*R) -> (N, d_out)
            case TRUNCATION -> {
                if (r >= geo.dOut()) {
                    yield y.get(new NDIndex(":, :" + geo.dOut()));
                }
                yield NDArrays.concat(new NDList(y, zeros(y, geo.dOut() - r)), 1); // (N, d_out)
            }
        };
    }

    /** Wrap-pads {@code (N, d_in)} to {@code (N, G*R)}: {@code x~[p] = x[p mod d_in]}. */
    private NDArray wrap(NDArray x) {
        return wrap(x, geo.groups() * geo.rank());
    }

    /** Wrap-pads {@code (N, d_in)} to {@code (N, need)}, {@code need >= d_in}. */
    private NDArray wrap(NDArray x, int need) {
        int have = geo.dIn();
        if (need == have) {
            return x;
        }
        NDList parts = new NDList(x);
        while (have < need) {
            int take = Math.min(geo.dIn(), need - have);
            parts.add(prefix(x, take));
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
            return prefix(y, dOut);
        }
        long reps = (dOut + len - 1) / len;
        return prefix(y.tile(new long[] {1, reps}), dOut);
    }

    /**
     * The first {@code cols} columns of {@code (N, C)}, a view. Through {@code split}, whose
     * gradient is one concatenation: DJL's {@code get(":, :k")} slices every axis, so the
     * gradient of the whole-range row slice and of the column slice each allocate and fill a
     * zero array of the whole input (for gate/up, down and their tiles, a tenth of the rotation
     * step went there).
     */
    private static NDArray prefix(NDArray a, long cols) {
        long have = a.getShape().get(1);
        return cols == have ? a : a.split(new long[] {cols}, 1).get(0);
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
