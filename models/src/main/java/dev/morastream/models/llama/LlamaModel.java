package dev.morastream.models.llama;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDArrays;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import ai.djl.ndarray.types.SparseFormat;
import ai.djl.nn.Activation;
import ai.djl.nn.core.Embedding;
import ai.djl.nn.core.Linear;
import dev.morastream.models.checkpoint.CheckpointException;
import dev.morastream.models.checkpoint.DType;
import dev.morastream.models.checkpoint.HfCheckpoint;
import dev.morastream.models.checkpoint.Tensor;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;

/**
 * A Llama-family decoder computed with DJL NDArrays: token embedding, RMSNorm, rotary position
 * embedding (HF rotate-half convention), grouped-query attention, SwiGLU MLP, tied or untied
 * {@code lm_head}, causal mask.
 *
 * <p>Weights keep their HuggingFace names and live in this model's manager; nothing of a loaded
 * model changes afterwards except through an owner that has it alone (full fine-tuning, ReMoRA
 * merges, {@code adapters merge}). Every forward pass
 * writes its temporaries into the manager of its input ids: give each step or request its own
 * sub-manager. All ops are written input-first so that results never attach to the weights'
 * manager.
 */
public final class LlamaModel implements AutoCloseable {
    private final LlamaConfig config;
    private final NDManager manager;
    private final Map<String, NDArray> weights; // HF name -> tensor, in checkpoint order
    private final Map<String, Fused> fused; // "model.layers.N.self_attn.qkv" / "model.layers.N.mlp.gate_up" -> fused weights
    private final float[] invFreq; // (headDim/2)

    /**
     * The frozen weights of several modules that read the same input, side by side: one GEMM
     * instead of one per module. The modules' own weights (and biases) in {@link #weights} are
     * row views of these arrays, so whatever writes a module's weight in place (full
     * fine-tuning, merges, ReMoRA restarts) writes the fused one too; nothing is copied after load.
     *
     * @param modules full HF module paths, in order of their output slices
     * @param weight {@code (sum d_out, d_in)}
     * @param bias {@code (sum d_out)} or {@code null}
     * @param splits where each module's slice ends along the output axis, but the last
     */
    private record Fused(List<String> modules, NDArray weight, NDArray bias, long[] splits) {}

    private LlamaModel(LlamaConfig config, NDManager manager, Map<String, NDArray> weights) {
        this.config = config;
        this.manager = manager;
        this.weights = weights;
        this.fused = fuse(config, weights);
        this.invFreq = config.inverseFrequencies();
    }

    /** Concatenates q/k/v and gate/up of every layer once, and makes the modules' weights views of them. */
    private static Map<String, Fused> fuse(LlamaConfig c, Map<String, NDArray> w) {
        Map<String, Fused> out = new java.util.HashMap<>();
        for (int i = 0; i < c.numHiddenLayers(); i++) {
            String p = "model.layers." + i + ".";
            out.put(p + "self_attn.qkv", fuse(w, p + "self_attn.qkv_proj",
                    List.of(p + "self_attn.q_proj", p + "self_attn.k_proj", p + "self_attn.v_proj")));
            out.put(p + "mlp.gate_up", fuse(w, p + "mlp.gate_up_proj", List.of(p + "mlp.gate_proj", p + "mlp.up_proj")));
        }
        return out;
    }

    private static Fused fuse(Map<String, NDArray> w, String name, List<String> modules) {
        boolean bias = w.containsKey(modules.get(0) + ".bias");
        long[] rows = new long[modules.size()];
        NDList ws = new NDList();
        NDList bs = new NDList();
        for (int k = 0; k < modules.size(); k++) {
            NDArray a = w.get(modules.get(k) + ".weight"); // (d_out_k, d_in)
            rows[k] = a.getShape().get(0);
            ws.add(a);
            if (bias) {
                bs.add(w.get(modules.get(k) + ".bias")); // (d_out_k)
            }
        }
        NDArray fw = NDArrays.concat(ws, 0); // (sum d_out, d_in), engine memory in the weights' manager
        fw.setName(name + ".weight");
        NDArray fb = bias ? NDArrays.concat(bs, 0) : null; // (sum d_out)
        if (fb != null) {
            fb.setName(name + ".bias");
        }
        long[] splits = new long[modules.size() - 1];
        long at = 0;
        for (int k = 0; k < modules.size(); k++) {
            String idx = at + ":" + (at + rows[k]);
            replaceByView(w, modules.get(k) + ".weight", fw.get(new NDIndex(idx))); // (d_out_k, d_in), a view
            if (fb != null) {
                replaceByView(w, modules.get(k) + ".bias", fb.get(new NDIndex(idx))); // (d_out_k), a view
            }
            at += rows[k];
            if (k < splits.length) {
                splits[k] = at;
            }
        }
        return new Fused(modules, fw, fb, splits);
    }

    private static void replaceByView(Map<String, NDArray> w, String name, NDArray view) {
        NDArray old = w.put(name, view);
        view.setName(name);
        old.close();
    }

    public LlamaConfig config() {
        return config;
    }

    /** The manager owning the weights. */
    public NDManager manager() {
        return manager;
    }

    public Device device() {
        return manager.getDevice();
    }

    /** All weights by HuggingFace name (live arrays, not copies). */
    public Map<String, NDArray> weights() {
        return java.util.Collections.unmodifiableMap(weights);
    }

    public NDArray weight(String name) {
        NDArray w = weights.get(name);
        if (w == null) {
            throw new IllegalArgumentException("no weight " + name);
        }
        return w;
    }

    public long parameterCount() {
        return weights.values().stream().mapToLong(NDArray::size).sum();
    }

    /** The linear modules of one layer, in HF order: q, k, v, o, gate, up, down. */
    public static final List<String> LINEAR_MODULES =
            List.of("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                    "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj");

    /** Every weight name this config needs, with its HF shape. */
    public static Map<String, long[]> expectedWeights(LlamaConfig c) {
        Map<String, long[]> m = new LinkedHashMap<>();
        long d = c.hiddenSize();
        long q = (long) c.numAttentionHeads() * c.headDim();
        long kv = (long) c.numKeyValueHeads() * c.headDim();
        long f = c.intermediateSize();
        m.put("model.embed_tokens.weight", new long[] {c.vocabSize(), d});
        for (int i = 0; i < c.numHiddenLayers(); i++) {
            String p = "model.layers." + i + ".";
            m.put(p + "input_layernorm.weight", new long[] {d});
            m.put(p + "self_attn.q_proj.weight", new long[] {q, d});
            m.put(p + "self_attn.k_proj.weight", new long[] {kv, d});
            m.put(p + "self_attn.v_proj.weight", new long[] {kv, d});
            m.put(p + "self_attn.o_proj.weight", new long[] {d, q});
            if (c.attentionBias()) {
                m.put(p + "self_attn.q_proj.bias", new long[] {q});
                m.put(p + "self_attn.k_proj.bias", new long[] {kv});
                m.put(p + "self_attn.v_proj.bias", new long[] {kv});
                m.put(p + "self_attn.o_proj.bias", new long[] {d});
            }
            m.put(p + "post_attention_layernorm.weight", new long[] {d});
            m.put(p + "mlp.gate_proj.weight", new long[] {f, d});
            m.put(p + "mlp.up_proj.weight", new long[] {f, d});
            m.put(p + "mlp.down_proj.weight", new long[] {d, f});
            if (c.mlpBias()) {
                m.put(p + "mlp.gate_proj.bias", new long[] {f});
                m.put(p + "mlp.up_proj.bias", new long[] {f});
                m.put(p + "mlp.down_proj.bias", new long[] {d});
            }
        }
        m.put("model.norm.weight", new long[] {d});
        if (!c.tieWordEmbeddings()) {
            m.put("lm_head.weight", new long[] {c.vocabSize(), d});
        }
        return m;
    }

    /** A freshly initialised model: normal(0, 0.02) matrices, unit norms; same seed, same weights. */
    public static LlamaModel random(LlamaConfig config, long seed, NDManager parent) {
        NDManager m = parent.newSubManager();
        Random rnd = new Random(seed);
        Map<String, NDArray> w = new LinkedHashMap<>();
        for (Map.Entry<String, long[]> e : expectedWeights(config).entrySet()) {
            int n = (int) Tensor.numel(e.getValue());
            float[] data = new float[n];
            if (e.getKey().endsWith("norm.weight")) {
                Arrays.fill(data, 1f);
            } else if (!e.getKey().endsWith(".bias")) {
                for (int i = 0; i < n; i++) {
                    data[i] = (float) (rnd.nextGaussian() * 0.02);
                }
            }
            NDArray a = Tensors.owned(m, data, new Shape(e.getValue()));
            a.setName(e.getKey());
            w.put(e.getKey(), a);
        }
        return new LlamaModel(config, m, w);
    }

    /** Builds a model from in-memory tensors (checked against the config). */
    public static LlamaModel fromTensors(LlamaConfig config, Map<String, Tensor> tensors, NDManager parent) {
        NDManager m = parent.newSubManager();
        Map<String, NDArray> w = new LinkedHashMap<>();
        for (Map.Entry<String, long[]> e : expectedWeights(config).entrySet()) {
            Tensor t = tensors.get(e.getKey());
            if (t == null) {
                m.close();
                throw new IllegalArgumentException("missing tensor " + e.getKey());
            }
            NDArray a = Tensors.owned(m, t.data(), new Shape(e.getValue()));
            a.setName(e.getKey());
            w.put(e.getKey(), a);
        }
        return new LlamaModel(config, m, w);
    }

    /** Loads a HuggingFace-layout directory ({@code config.json} + safetensors). */
    public static LlamaModel load(Path dir, NDManager parent) {
        LlamaConfig config = LlamaConfig.read(dir);
        Map<String, long[]> expected = expectedWeights(config);
        Map<String, Path> files = HfCheckpoint.tensorFiles(dir);
        NDManager m = parent.newSubManager();
        Map<String, NDArray> w = new LinkedHashMap<>();
        try {
            HfCheckpoint.read(dir, new ArrayList<>(expected.keySet()), t -> {
                long[] want = expected.get(t.name());
                if (!Arrays.equals(want, t.shape())) {
                    throw new CheckpointException(files.get(t.name()), t.name(),
                            "wrong shape " + Arrays.toString(t.shape()) + ", config.json implies " + Arrays.toString(want));
                }
                NDArray a = Tensors.owned(m, t.data(), new Shape(t.shape()));
                a.setName(t.name());
                w.put(t.name(), a);
            });
        } catch (RuntimeException e) {
            m.close();
            throw e;
        }
        // keep HF order regardless of shard order
        Map<String, NDArray> ordered = new LinkedHashMap<>();
        expected.keySet().forEach(k -> ordered.put(k, w.get(k)));
        return new LlamaModel(config, m, ordered);
    }

    /** Copies of all weights as in-memory tensors, HF order. */
    public List<Tensor> toTensors() {
        List<Tensor> out = new ArrayList<>();
        for (Map.Entry<String, NDArray> e : weights.entrySet()) {
            out.add(new Tensor(e.getKey(), e.getValue().getShape().getShape(), e.getValue().toFloatArray()));
        }
        return out;
    }

    /** Writes {@code config.json} and the weights in HF layout. */
    public void save(Path dir, DType dtype, long maxShardBytes, Map<String, String> metadata) throws IOException {
        Files.createDirectories(dir);
        config.write(dir);
        HfCheckpoint.write(dir, toTensors(), dtype, maxShardBytes, metadata);
    }

    /**
     * Forward pass through an explicit {@link LinearOp}: {@link LinearOp#PLAIN} for the base, an
     * adapter set's {@code op()} for its version. The model holds no adapter state, so any number
     * of trainers, evaluators and requests can use it at once, each with its own adapter.
     *
     * @param ids token ids {@code (B, T)} int64; its manager receives every temporary
     * @param cache keys/values of earlier positions, extended in place; {@code null} for a plain
     *     causal pass over {@code ids}
     * @param op how linear layers are applied (never {@code null})
     * @return logits {@code (B, T, V)}
     */
    public NDArray forward(NDArray ids, KvCache cache, LinearOp op) {
        java.util.Objects.requireNonNull(op, "op (LinearOp.PLAIN for the base model)");
        NDArray h = hidden(ids, cache, op); // (B, T, d)
        NDArray head = config.tieWordEmbeddings() ? weight("model.embed_tokens.weight") : weight("lm_head.weight");
        return op.apply("lm_head", h, head, null); // (B, T, V)
    }

    /** Final hidden states after {@code model.norm}: {@code (B, T, d)}. */
    public NDArray hidden(NDArray ids, KvCache cache, LinearOp op) {
        NDManager m = ids.getManager();
        long[] s = ids.getShape().getShape();
        long b = s[0];
        int t = (int) s[1];
        int start = cache == null ? 0 : cache.length();
        int total = start + t;
        int hd = config.headDim();
        int nh = config.numAttentionHeads();
        int nkv = config.numKeyValueHeads();

        NDArray h = Embedding.embedding(ids, weight("model.embed_tokens.weight"), SparseFormat.DENSE)
                .singletonOrThrow(); // (B, T, d)
        NDArray[] rope = ropeTables(m, start, t); // cos, sin: (1, 1, T, D)
        NDArray mask = causalMask(m, start, t); // (1, 1, T, S)
        NDArray scale = m.full(new Shape(), (float) (1.0 / Math.sqrt(hd)), DataType.FLOAT32, device()); // ()
        NDArray eps = m.full(new Shape(), (float) config.rmsNormEps(), DataType.FLOAT32, device()); // ()

        for (int i = 0; i < config.numHiddenLayers(); i++) {
            String p = "model.layers." + i + ".";
            NDArray x = rmsNorm(h, eps, weight(p + "input_layernorm.weight")); // (B, T, d)
            NDArray[] qkv = projections(op, p + "self_attn.qkv", x); // (B, T, H*D), (B, T, KV*D) x2
            NDArray q = qkv[0].reshape(b, t, nh, hd).transpose(0, 2, 1, 3); // (B, H, T, D)
            NDArray k = qkv[1].reshape(b, t, nkv, hd).transpose(0, 2, 1, 3); // (B, KV, T, D)
            NDArray v = qkv[2].reshape(b, t, nkv, hd).transpose(0, 2, 1, 3); // (B, KV, T, D)
            q = applyRope(q, rope[0], rope[1]);
            k = applyRope(k, rope[0], rope[1]);
            if (cache != null) {
                NDList kv = cache.append(i, k, v);
                k = kv.get(0); // (B, KV, S, D)
                v = kv.get(1); // (B, KV, S, D)
            }
            NDArray kx = repeatKv(k, b, total); // (B, H, S, D)
            NDArray vx = repeatKv(v, b, total); // (B, H, S, D)
            NDArray scores = q.matMul(kx.transpose(0, 1, 3, 2)).mul(scale).add(mask); // (B, H, T, S)
            NDArray probs = scores.softmax(-1); // (B, H, T, S)
            NDArray o = probs.matMul(vx).transpose(0, 2, 1, 3).reshape(b, t, (long) nh * hd); // (B, T, H*D)
            h = h.add(linear(op, p + "self_attn.o_proj", o)); // (B, T, d)

            x = rmsNorm(h, eps, weight(p + "post_attention_layernorm.weight")); // (B, T, d)
            NDArray[] gu = projections(op, p + "mlp.gate_up", x); // (B, T, F) x2
            NDArray g = gu[0]; // (B, T, F)
            NDArray u = gu[1]; // (B, T, F)
            NDArray act = g.mul(Activation.sigmoid(g)).mul(u); // SiLU(g) * u: (B, T, F)
            h = h.add(linear(op, p + "mlp.down_proj", act)); // (B, T, d)
        }
        if (cache != null) {
            cache.advance(t);
        }
        return rmsNorm(h, eps, weight("model.norm.weight")); // (B, T, d)
    }

    /**
     * One decode step over {@code B} independent sequences, rows {@code 0..B-1} of {@code cache}
     * (each at its own position): every linear layer (q/k/v/o, gate/up/down, {@code lm_head}) runs
     * once over the {@code B} rows through {@code op} (a {@link RowGroupedOp} gives each row its
     * own adapter), attention reads each row's own keys, the positions of other rows' longer
     * sequences masked out. Row {@code b} equals {@link #forward} of its token with a one-sequence
     * cache holding the same positions, within float rounding.
     *
     * @param ids the next token of each row {@code (B, 1)} int64; its manager receives every temporary
     * @param cache keys/values of rows {@code 0..B-1}, extended by one position each
     * @param op how linear layers are applied to the {@code (B, d_in)} rows
     * @return logits {@code (B, V)}
     */
    public NDArray decode(NDArray ids, BatchKvCache cache, LinearOp op) {
        java.util.Objects.requireNonNull(op, "op (LinearOp.PLAIN for the base model)");
        NDManager m = ids.getManager();
        int b = (int) ids.getShape().get(0);
        if (ids.getShape().dimension() != 2 || ids.getShape().get(1) != 1) {
            throw new IllegalArgumentException("decode takes one token per row, ids (B, 1); got " + ids.getShape());
        }
        if (b > cache.slots()) {
            throw new IllegalArgumentException(b + " rows but the cache has " + cache.slots() + " slots");
        }
        int hd = config.headDim();
        int nh = config.numAttentionHeads();
        int nkv = config.numKeyValueHeads();
        int half = hd / 2;
        long[] rowIds = new long[b];
        long[] pos = new long[b];
        int span = 0;
        float[] cos = new float[b * hd];
        float[] sin = new float[b * hd];
        for (int r = 0; r < b; r++) {
            rowIds[r] = r;
            pos[r] = cache.length(r);
            if (pos[r] >= config.maxPositionEmbeddings()) {
                throw new IllegalArgumentException("row " + r + " is at the end of the context (" + pos[r] + ")");
            }
            span = Math.max(span, (int) pos[r] + 1);
            for (int k = 0; k < half; k++) { // the same rotary angles as ropeTables
                double a = (double) pos[r] * invFreq[k];
                float c = (float) Math.cos(a);
                float s = (float) Math.sin(a);
                cos[r * hd + k] = c;
                cos[r * hd + k + half] = c;
                sin[r * hd + k] = s;
                sin[r * hd + k + half] = s;
            }
        }
        float[] maskData = new float[b * span];
        for (int r = 0; r < b; r++) {
            for (int j = (int) pos[r] + 1; j < span; j++) {
                maskData[r * span + j] = -1e9f; // another row's positions
            }
        }
        NDArray cosA = m.create(cos, new Shape(b, 1, 1, hd)).toDevice(device(), false); // (B, 1, 1, D)
        NDArray sinA = m.create(sin, new Shape(b, 1, 1, hd)).toDevice(device(), false); // (B, 1, 1, D)
        NDArray mask = m.create(maskData, new Shape(b, 1, 1, span)).toDevice(device(), false); // (B, 1, 1, S)
        NDArray rows = m.create(rowIds).toDevice(device(), false); // (B)
        NDArray at = m.create(pos).toDevice(device(), false); // (B)
        NDArray scale = m.full(new Shape(), (float) (1.0 / Math.sqrt(hd)), DataType.FLOAT32, device()); // ()
        NDArray eps = m.full(new Shape(), (float) config.rmsNormEps(), DataType.FLOAT32, device()); // ()

        NDArray h = Embedding.embedding(ids, weight("model.embed_tokens.weight"), SparseFormat.DENSE)
                .singletonOrThrow().reshape(b, config.hiddenSize()); // (B, d)
        for (int i = 0; i < config.numHiddenLayers(); i++) {
            String p = "model.layers." + i + ".";
            NDArray x = rmsNorm(h, eps, weight(p + "input_layernorm.weight")); // (B, d)
            NDArray[] qkv = projections(op, p + "self_attn.qkv", x); // (B, H*D), (B, KV*D) x2
            NDArray q = qkv[0].reshape(b, nh, 1, hd); // (B, H, 1, D)
            NDArray k = qkv[1].reshape(b, nkv, 1, hd); // (B, KV, 1, D)
            NDArray v = qkv[2].reshape(b, nkv, hd); // (B, KV, D)
            q = applyRope(q, cosA, sinA);
            k = applyRope(k, cosA, sinA).reshape(b, nkv, hd); // (B, KV, D)
            cache.write(i, rows, at, k, v);
            NDArray[] kv = cache.read(i, m, b, span); // (B, KV, S, D) each
            NDArray kx = repeatKv(kv[0], b, span); // (B, H, S, D)
            NDArray vx = repeatKv(kv[1], b, span); // (B, H, S, D)
            NDArray scores = q.matMul(kx.transpose(0, 1, 3, 2)).mul(scale).add(mask); // (B, H, 1, S)
            NDArray probs = scores.softmax(-1); // (B, H, 1, S)
            NDArray o = probs.matMul(vx).reshape(b, (long) nh * hd); // (B, H*D)
            h = h.add(linear(op, p + "self_attn.o_proj", o)); // (B, d)

            x = rmsNorm(h, eps, weight(p + "post_attention_layernorm.weight")); // (B, d)
            NDArray[] gu = projections(op, p + "mlp.gate_up", x); // (B, F) x2
            NDArray act = gu[0].mul(Activation.sigmoid(gu[0])).mul(gu[1]); // SiLU(g) * u: (B, F)
            h = h.add(linear(op, p + "mlp.down_proj", act)); // (B, d)
        }
        cache.advance(b);
        NDArray head = config.tieWordEmbeddings() ? weight("model.embed_tokens.weight") : weight("lm_head.weight");
        return op.apply("lm_head", rmsNorm(h, eps, weight("model.norm.weight")), head, null); // (B, V)
    }

    /**
     * The outputs of the modules of one fused group on their shared input {@code x (..., d_in)}:
     * one GEMM over the fused frozen weights, split into each module's slice, each slice plus its
     * own module's update ({@link LinearOp#delta}), when {@code op} says its layers are the base
     * plus an update ({@link LinearOp#sharesBase}) and no module's weight is being trained (full
     * fine-tuning and pretraining need the gradient of each module's own array); otherwise each
     * module through {@code op} alone. Either way module {@code k}'s output equals {@code
     * op.apply(module_k, x, W_k, b_k)} within float rounding.
     *
     * @return per module {@code (..., d_out_k)}, in the manager of {@code x}
     */
    NDArray[] projections(LinearOp op, String group, NDArray x) {
        Fused f = fused.get(group);
        List<String> mods = f.modules();
        NDArray[] out = new NDArray[mods.size()];
        boolean shared = true;
        for (String mod : mods) {
            if (!op.sharesBase(mod) || weight(mod + ".weight").hasGradient()) {
                shared = false;
                break;
            }
        }
        if (!shared) {
            for (int k = 0; k < out.length; k++) {
                out[k] = linear(op, mods.get(k), x);
            }
            return out;
        }
        NDArray y = f.bias() == null
                ? Linear.linear(x, f.weight()).singletonOrThrow()
                : Linear.linear(x, f.weight(), f.bias()).singletonOrThrow(); // (..., sum d_out)
        NDList parts = y.split(f.splits(), y.getShape().dimension() - 1); // views (..., d_out_k)
        for (int k = 0; k < out.length; k++) {
            NDArray d = op.delta(mods.get(k), x, weight(mods.get(k) + ".weight")); // (..., d_out_k) or null
            // a slice without an update is copied out (+ 0: exact, and recorded, unlike duplicate(), which DJL runs
            // without grad) so that every module's output has the same dense layout with or without an update:
            // kernels take layout-dependent paths (vectorised or not), and a zero update must give exactly the base
            out[k] = parts.get(k).add(d == null ? zero(x) : d);
        }
        return out;
    }

    private static NDArray zero(NDArray like) {
        return like.getManager().zeros(new Shape(), like.getDataType(), like.getDevice()); // ()
    }

    private NDArray linear(LinearOp op, String module, NDArray x) {
        NDArray bias = weights.get(module + ".bias");
        return op.apply(module, x, weight(module + ".weight"), bias);
    }

    /** RMSNorm over the last axis: {@code x / sqrt(mean(x^2) + eps) * w}. */
    private NDArray rmsNorm(NDArray x, NDArray eps, NDArray w) {
        NDArray rms = x.square().mean(new int[] {-1}, true).add(eps).sqrt(); // (..., 1)
        return x.div(rms).mul(w);
    }

    /** HF rotate-half: {@code cat(-x[D/2:], x[:D/2])}. */
    private static NDArray rotateHalf(NDArray x, int hd) {
        int half = hd / 2;
        NDArray x1 = x.get(new NDIndex("..., :" + half));
        NDArray x2 = x.get(new NDIndex("..., " + half + ":"));
        return NDArrays.concat(new NDList(x2.neg(), x1), -1);
    }

    private NDArray applyRope(NDArray x, NDArray cos, NDArray sin) {
        return x.mul(cos).add(rotateHalf(x, config.headDim()).mul(sin));
    }

    /** cos and sin of {@code pos * invFreq}, duplicated over both halves: {@code (1, 1, T, D)}. */
    private NDArray[] ropeTables(NDManager m, int start, int t) {
        int hd = config.headDim();
        int half = hd / 2;
        float[] cos = new float[t * hd];
        float[] sin = new float[t * hd];
        for (int i = 0; i < t; i++) {
            for (int k = 0; k < half; k++) {
                double a = (double) (start + i) * invFreq[k];
                float c = (float) Math.cos(a);
                float s = (float) Math.sin(a);
                cos[i * hd + k] = c;
                cos[i * hd + k + half] = c;
                sin[i * hd + k] = s;
                sin[i * hd + k + half] = s;
            }
        }
        Shape shape = new Shape(1, 1, t, hd);
        return new NDArray[] {m.create(cos, shape).toDevice(device(), false), m.create(sin, shape).toDevice(device(), false)};
    }

    /** Additive causal mask for queries {@code start..start+t-1} over keys {@code 0..start+t-1}. */
    private NDArray causalMask(NDManager m, int start, int t) {
        int total = start + t;
        float[] mask = new float[t * total];
        for (int i = 0; i < t; i++) {
            for (int j = start + i + 1; j < total; j++) {
                mask[i * total + j] = -1e9f;
            }
        }
        return m.create(mask, new Shape(1, 1, t, total)).toDevice(device(), false);
    }

    /** Grouped-query attention: each KV head serves {@code groups} consecutive query heads. */
    private NDArray repeatKv(NDArray kv, long b, int s) {
        int g = config.groups();
        if (g == 1) {
            return kv;
        }
        int nkv = config.numKeyValueHeads();
        int hd = config.headDim();
        return kv.expandDims(2) // (B, KV, 1, S, D)
                .broadcast(b, nkv, g, s, hd) // (B, KV, G, S, D)
                .reshape(b, (long) nkv * g, s, hd); // (B, H, S, D)
    }

    /** Creates int64 ids {@code (B, T)} in a manager on this model's device. */
    public NDArray ids(NDManager m, int[][] batch) {
        int b = batch.length;
        int t = batch[0].length;
        long[] flat = new long[b * t];
        for (int i = 0; i < b; i++) {
            for (int j = 0; j < t; j++) {
                flat[i * t + j] = batch[i][j];
            }
        }
        return m.create(flat, new Shape(b, t)).toType(DataType.INT64, false).toDevice(device(), false);
    }

    @Override
    public void close() {
        manager.close();
    }
}
