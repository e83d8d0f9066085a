package dev.morastream.models.adapters;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import dev.morastream.models.llama.BatchableOp;
import dev.morastream.models.llama.LinearOp;
import dev.morastream.models.llama.LlamaModel;
import dev.morastream.models.llama.Tensors;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The adapters of one model: one {@link AdapterLayer} per targeted linear module, applied by
 * passing {@link #op()} to {@code LlamaModel.forward} (the model itself holds no adapter). Handles
 * dropout (training only), merge/unmerge into the base weights, and names trainable arrays the
 * PEFT way ({@code base_model.model.<module>.lora_A.weight}).
 *
 * <p>Two kinds: {@link #create} makes a set that never writes the model's weights (LoRA, MoRA:
 * any number of them share one model, each trainer or request passing its own op); {@link
 * #createOwning} also allows what writes the weights (full fine-tuning, {@link #merge}, {@link
 * #absorb}), for a caller that has the model to itself.
 */
public final class AdapterSet implements AutoCloseable {
    /** PEFT prefix of every adapter tensor name. */
    public static final String PREFIX = "base_model.model.";

    private final LlamaModel model;
    private final AdapterSpec spec;
    private final NDManager manager;
    private final Map<String, AdapterLayer> layers; // module -> layer, model order
    private final boolean owning;
    private volatile boolean training;
    private volatile boolean merged;
    private final LinearOp op = new SetOp();

    /** {@link #op()}: base plus this set's update, batchable with other sets' ops of the same method and shape. */
    private final class SetOp implements BatchableOp {
        @Override
        public NDArray apply(String module, NDArray x, NDArray weight, NDArray bias) {
            return AdapterSet.this.apply(module, x, weight, bias);
        }

        @Override
        public NDArray delta(String module, NDArray x, NDArray weight) {
            return AdapterSet.this.delta(module, x);
        }

        /** Base plus {@link AdapterSet#delta} (which takes {@code (..., d_in)}); full fine-tuning's update is in the weight itself. */
        @Override
        public boolean sharesBase(String module) {
            return true;
        }

        @Override
        public Object deltaKind(String module) {
            AdapterLayer l = layers.get(module);
            if (l == null || merged || spec.method() == AdapterSpec.Method.FULL) {
                return null;
            }
            if (training && spec.dropout() > 0) {
                return this; // dropout masks are per set: never batched with another
            }
            if (l instanceof MoraLayer mora) {
                return mora.geometry();
            }
            if (l instanceof LoraLayer lora) {
                return List.of("lora", lora.dIn(), lora.dOut(), lora.rank());
            }
            return this;
        }

        @Override
        public RowsDelta prepare(String module, List<BatchableOp> ops, int[] rowOp, NDManager owner) {
            Object kind = deltaKind(module);
            List<AdapterLayer> ls = new ArrayList<>(ops.size());
            for (BatchableOp o : ops) {
                if (!(o instanceof SetOp s) || kind == null || !kind.equals(s.deltaKind(module))) {
                    throw new IllegalArgumentException("not an adapter op of the same kind on " + module);
                }
                ls.add(s.set().layers.get(module));
            }
            int dIn = ls.get(0).dIn();
            if (ls.get(0) instanceof MoraLayer) {
                RowsDelta d = MoraLayer.batched(ls.stream().map(MoraLayer.class::cast).toList(), rowOp, owner);
                return x -> d.delta(x.reshape(-1, dIn));
            }
            if (ls.get(0) instanceof LoraLayer) {
                RowsDelta d = LoraLayer.batched(ls.stream().map(LoraLayer.class::cast).toList(), rowOp, owner);
                return x -> d.delta(x.reshape(-1, dIn));
            }
            throw new IllegalStateException("no batched update for " + ls.get(0).getClass().getSimpleName());
        }

        private AdapterSet set() {
            return AdapterSet.this;
        }
    }

    private AdapterSet(LlamaModel model, AdapterSpec spec, NDManager manager, Map<String, AdapterLayer> layers, boolean owning) {
        this.model = model;
        this.spec = spec;
        this.manager = manager;
        this.layers = layers;
        this.owning = owning;
    }

    /**
     * Creates fresh adapters that leave the model's weights alone: pass {@link #op()} to each
     * forward. Any number of such sets (trainers, evaluators, served versions) share one model.
     * Full fine-tuning, {@link #merge} and {@link #absorb} are refused: they change the weights
     * every user of the model shares.
     */
    public static AdapterSet create(LlamaModel model, AdapterSpec spec) {
        if (spec.method() == AdapterSpec.Method.FULL) {
            throw new IllegalArgumentException("a full fine-tuning adapter changes the weights every user of the model"
                    + " shares: serve it as its own merged model (bin/mora adapters merge), or train it on a model copy of its own");
        }
        return build(model, spec, false);
    }

    /**
     * Creates fresh adapters for a caller that has {@code model} to itself: full fine-tuning (which
     * trains the weights in place), {@link #merge} and ReMoRA's {@link #absorb} are allowed.
     */
    public static AdapterSet createOwning(LlamaModel model, AdapterSpec spec) {
        return build(model, spec, true);
    }

    private static AdapterSet build(LlamaModel model, AdapterSpec spec, boolean owning) {
        NDManager m = model.manager().newSubManager();
        Map<String, AdapterLayer> layers = new LinkedHashMap<>();
        for (int i = 0; i < model.config().numHiddenLayers(); i++) {
            for (String lin : LlamaModel.LINEAR_MODULES) {
                String module = "model.layers." + i + "." + lin;
                if (!spec.targets(module)) {
                    continue;
                }
                NDArray w = model.weight(module + ".weight");
                int dOut = (int) w.getShape().get(0);
                int dIn = (int) w.getShape().get(1);
                AdapterLayer layer = switch (spec.method()) {
                    case MORA -> new MoraLayer(module, MoraGeometry.of(spec.resolvedVariant(), dIn, dOut, spec.r()), m);
                    case LORA -> new LoraLayer(module, dIn, dOut, spec.r(), spec.alpha(), spec.seed(), m);
                    case FULL -> new FullLayer(module, w);
                };
                layers.put(module, layer);
            }
        }
        if (layers.isEmpty()) {
            m.close();
            throw new IllegalArgumentException("no module of the model matches target_modules " + spec.targetModules());
        }
        return new AdapterSet(model, spec, m, layers, owning);
    }

    /** How this set applies the linear layers (base plus its update), for explicit forwards. */
    public LinearOp op() {
        return op;
    }

    public AdapterSpec spec() {
        return spec;
    }

    public LlamaModel model() {
        return model;
    }

    public Map<String, AdapterLayer> layers() {
        return Collections.unmodifiableMap(layers);
    }

    /** Trainable arrays by PEFT name. */
    public Map<String, NDArray> trainable() {
        Map<String, NDArray> out = new LinkedHashMap<>();
        layers.forEach((module, l) -> l.parameters().forEach((k, a) -> out.put(PREFIX + module + "." + k, a)));
        return out;
    }

    /**
     * Sets every trainable number to a normal draw (mean 0, {@code std}), in {@link #trainable}
     * order from {@code new Random(seed)}: a version that changes the output, for benchmarks and
     * tests (a fresh set is exactly the base).
     *
     * @return this set
     */
    public AdapterSet randomize(long seed, double std) {
        java.util.Random r = new java.util.Random(seed);
        for (NDArray p : trainable().values()) {
            float[] v = new float[Math.toIntExact(p.size())];
            for (int i = 0; i < v.length; i++) {
                v[i] = (float) (r.nextGaussian() * std);
            }
            p.set(java.nio.FloatBuffer.wrap(v));
        }
        return this;
    }

    /**
     * Marks the set as only read from now on and precomputes what depends on its values alone
     * (MoRA rotation's per-block matrices, {@link MoraLayer#freeze}), so that decoding a few rows
     * takes one batched product per module. Its trainable values must not change afterwards: call
     * it on a loaded or finished set, before sharing it.
     *
     * @return this set
     */
    public AdapterSet freeze() {
        layers.values().forEach(l -> {
            if (l instanceof MoraLayer m) {
                m.freeze();
            }
        });
        return this;
    }

    public long trainableParameters() {
        return layers.values().stream().mapToLong(AdapterLayer::trainableParameters).sum();
    }

    /** Dropout applies only while training. */
    public void setTraining(boolean training) {
        this.training = training;
    }

    public boolean merged() {
        return merged;
    }

    private NDArray apply(String module, NDArray x, NDArray w, NDArray b) {
        NDArray y = LinearOp.PLAIN.apply(module, x, w, b); // (..., d_out)
        NDArray d = delta(module, x); // (..., d_out) or null
        return d == null ? y : y.add(d);
    }

    /** This set's update of {@code module} on {@code x (..., d_in)}: {@code (..., d_out)}, or null when it has none there. */
    private NDArray delta(String module, NDArray x) {
        AdapterLayer l = layers.get(module);
        if (l == null || merged || spec.method() == AdapterSpec.Method.FULL) {
            return null;
        }
        Shape s = x.getShape();
        NDArray x2 = x.reshape(-1, l.dIn()); // (N, d_in)
        if (training && spec.dropout() > 0) {
            x2 = x2.mul(dropoutMask(module, x2)); // (N, d_in)
        }
        NDArray d = l.delta(x2); // (N, d_out)
        long[] out = s.getShape().clone();
        out[out.length - 1] = l.dOut();
        return d.reshape(new Shape(out));
    }

    /**
     * Sets the step whose dropout masks the next training forwards draw. Masks are a pure function
     * of (spec seed, step, module, position), drawn in Java rather than from the engine's global
     * generator, so that concurrent trainers never disturb each other and a resumed run draws the
     * same masks as an uninterrupted one.
     */
    public void seedDropout(long step) {
        this.dropoutStep = step;
    }

    private volatile long dropoutStep;

    /** Inverted-dropout mask {@code (N, d_in)}: 0 with probability p, else 1/(1-p). */
    private NDArray dropoutMask(String module, NDArray like) {
        double p = spec.dropout();
        float keepScale = (float) (1 / (1 - p));
        int n = (int) like.getShape().size();
        float[] mask = new float[n];
        java.util.SplittableRandom rnd = new java.util.SplittableRandom(
                mix(mix(spec.seed() * 0x9E3779B97F4A7C15L + dropoutStep + 1) ^ module.hashCode()));
        for (int i = 0; i < n; i++) {
            mask[i] = rnd.nextDouble() < p ? 0f : keepScale;
        }
        return like.getManager().create(mask, like.getShape()).toDevice(like.getDevice(), false); // (N, d_in)
    }

    private static long mix(long z) { // SplitMix64's finaliser
        z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
        z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
        return z ^ (z >>> 31);
    }

    /** Adds every layer's {@code dW} into its base weight; the forward pass then skips adapters. */
    public synchronized void merge() {
        requireOwning("merge");
        if (merged) {
            return;
        }
        if (spec.method() != AdapterSpec.Method.FULL) {
            addDeltas(1f);
        }
        merged = true;
    }

    /** Subtracts every layer's {@code dW} from its base weight again. */
    public synchronized void unmerge() {
        if (!merged) {
            return;
        }
        if (spec.method() != AdapterSpec.Method.FULL) {
            addDeltas(-1f);
        }
        merged = false;
    }

    private void requireOwning(String what) {
        if (!owning) {
            throw new IllegalStateException(what + " writes the base weights, which this set shares with other users of the"
                    + " model; make the set with AdapterSet.createOwning on a model of its own");
        }
    }

    private void addDeltas(float sign) {
        for (AdapterLayer l : layers.values()) {
            NDArray w = model.weight(l.module() + ".weight");
            float[] wd = w.toFloatArray();
            float[] dw = l.explicitDelta();
            for (int i = 0; i < wd.length; i++) {
                wd[i] += sign * dw[i];
            }
            Tensors.assign(w, wd);
        }
    }

    /**
     * Adds the current update into the base weights for good and zeroes the adapters (ReMoRA /
     * ReLoRA): the model's output is unchanged, the adapters start again from zero.
     */
    public synchronized void absorb() {
        requireOwning("absorb (ReMoRA/ReLoRA restart)");
        if (merged) {
            merged = false; // the deltas are in the weights already
        } else if (spec.method() != AdapterSpec.Method.FULL) {
            addDeltas(1f);
        }
        if (spec.method() != AdapterSpec.Method.FULL) {
            zero();
        }
    }

    /** Zeroes every adapter (the model equals its base again, or for FULL, the weights return to W0). */
    public void zero() {
        layers.values().forEach(AdapterLayer::zero);
    }

    /**
     * Removes the adapters from the model (unmerged first; for FULL the trained weights return to
     * W0) and frees them.
     */
    @Override
    public void close() {
        unmerge();
        if (spec.method() == AdapterSpec.Method.FULL) {
            zero();
        }
        manager.close();
    }
}
