package dev.morastream.models.adapters;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDArrays;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import ai.djl.nn.core.Linear;
import dev.morastream.models.llama.BatchableOp;
import dev.morastream.models.llama.Scalars;
import dev.morastream.models.llama.Tensors;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;

/**
 * LoRA with PEFT semantics: {@code y += (alpha / r) * B A x}, {@code A (r, d_in)} Kaiming-uniform
 * ({@code U(-1/sqrt(d_in), 1/sqrt(d_in))}, PEFT's default), {@code B (d_out, r)} zero.
 */
public final class LoraLayer implements AdapterLayer {
    private final String module;
    private final int dIn;
    private final int dOut;
    private final int r;
    private final float scale;
    private final NDArray a; // (r, d_in)
    private final NDArray b; // (d_out, r)

    public LoraLayer(String module, int dIn, int dOut, int r, double alpha, long seed, NDManager manager) {
        this.module = module;
        this.dIn = dIn;
        this.dOut = dOut;
        this.r = r;
        this.scale = (float) (alpha / r);
        Random rnd = new Random(seed ^ module.hashCode());
        float bound = (float) (1.0 / Math.sqrt(dIn));
        float[] ad = new float[r * dIn];
        for (int i = 0; i < ad.length; i++) {
            ad[i] = (rnd.nextFloat() * 2 - 1) * bound;
        }
        this.a = Tensors.owned(manager, ad, new Shape(r, dIn));
        this.b = manager.zeros(new Shape(dOut, r));
    }

    public float scale() {
        return scale;
    }

    public int rank() {
        return r;
    }

    @Override
    public String module() {
        return module;
    }

    @Override
    public int dIn() {
        return dIn;
    }

    @Override
    public int dOut() {
        return dOut;
    }

    @Override
    public NDArray delta(NDArray x) {
        NDArray h = Scalars.mul(Linear.linear(x, a).singletonOrThrow(), scale); // (N, r): scaled on the narrow side
        return Linear.linear(h, b).singletonOrThrow(); // (N, d_out)
    }

    /**
     * The updates of several LoRA layers of one shape on the rows of a batch, for per-row adapter
     * selection: row {@code i} goes through {@code layers.get(rowLayer[i])}, a row with {@code -1}
     * gets zeros. The {@code A}s and {@code B}s, concatenated once into {@code owner}, make two
     * GEMMs of width {@code K*r} whose blocks are masked per row (each scaled by its layer's
     * {@code alpha / r}), so the cost barely grows with {@code K}. Row {@code i} equals {@code
     * layers.get(rowLayer[i]).delta} of that row within float rounding. The matrices are copied:
     * prepare again after they change.
     */
    public static BatchableOp.RowsDelta batched(List<LoraLayer> layers, int[] rowLayer, NDManager owner) {
        LoraLayer first = layers.get(0);
        for (LoraLayer l : layers) {
            if (l.dIn != first.dIn || l.dOut != first.dOut || l.r != first.r) {
                throw new IllegalArgumentException("one shape per batched delta");
            }
        }
        int k = layers.size();
        int n = rowLayer.length;
        NDList as = new NDList(k);
        NDList bs = new NDList(k);
        layers.forEach(l -> {
            as.add(l.a);
            bs.add(l.b);
        });
        NDArray acat = k == 1 ? first.a.duplicate() : NDArrays.concat(as, 0); // (K*r, d_in), a copy
        NDArray bcat = k == 1 ? first.b.duplicate() : NDArrays.concat(bs, 1); // (d_out, K*r), a copy
        acat.attach(owner);
        bcat.attach(owner);
        float[] mask = new float[n * k]; // (N, K): the row's own block, scaled
        for (int i = 0; i < n; i++) {
            if (rowLayer[i] >= 0) {
                mask[i * k + rowLayer[i]] = layers.get(rowLayer[i]).scale;
            }
        }
        NDArray mk = owner.create(mask, new Shape(n, k, 1)).toDevice(owner.getDevice(), false); // (N, K, 1)
        int r = first.r;
        return x -> {
            if (x.getShape().get(0) != n) {
                throw new IllegalArgumentException("prepared for " + n + " rows, got " + x.getShape());
            }
            NDArray h = Linear.linear(x, acat).singletonOrThrow(); // (N, K*r)
            h = h.reshape(n, k, r).mul(mk).reshape(n, (long) k * r); // (N, K*r)
            return Linear.linear(h, bcat).singletonOrThrow(); // (N, d_out)
        };
    }

    @Override
    public float[] explicitDelta() {
        float[] ad = a.toFloatArray();
        float[] bd = b.toFloatArray();
        float[] dw = new float[dOut * dIn];
        for (int o = 0; o < dOut; o++) {
            for (int i = 0; i < dIn; i++) {
                double s = 0;
                for (int k = 0; k < r; k++) {
                    s += (double) bd[o * r + k] * ad[k * dIn + i];
                }
                dw[o * dIn + i] = (float) (s * scale);
            }
        }
        return dw;
    }

    @Override
    public Map<String, NDArray> parameters() {
        Map<String, NDArray> p = new LinkedHashMap<>();
        p.put("lora_A.weight", a);
        p.put("lora_B.weight", b);
        return p;
    }

    @Override
    public void zero() {
        b.subi(b);
    }
}
