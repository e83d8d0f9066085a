package dev.morastream.models.llama;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.morastream.models.checkpoint.CheckpointException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Set;

/**
 * The Llama-family fields of a HuggingFace {@code config.json}.
 *
 * @param hiddenSize width of the residual stream, {@code d}
 * @param intermediateSize width of the SwiGLU MLP
 * @param numHiddenLayers number of decoder layers
 * @param numAttentionHeads number of query heads
 * @param numKeyValueHeads number of key/value heads (grouped-query attention when smaller)
 * @param headDim dimension of one head (HF default {@code hidden_size / num_attention_heads})
 * @param vocabSize number of token ids
 * @param maxPositionEmbeddings context length the model was trained for
 * @param rmsNormEps epsilon of RMSNorm
 * @param ropeTheta base of the rotary frequencies
 * @param ropeScaling optional rope scaling ({@code null}, {@code linear} or {@code llama3})
 * @param tieWordEmbeddings whether {@code lm_head} reuses {@code embed_tokens}
 * @param attentionBias whether q/k/v/o projections have a bias
 * @param mlpBias whether gate/up/down projections have a bias
 * @param bosTokenId begin-of-sequence id, or -1
 * @param eosTokenIds end-of-sequence ids (HF allows a list)
 */
public record LlamaConfig(
        int hiddenSize,
        int intermediateSize,
        int numHiddenLayers,
        int numAttentionHeads,
        int numKeyValueHeads,
        int headDim,
        int vocabSize,
        int maxPositionEmbeddings,
        double rmsNormEps,
        double ropeTheta,
        RopeScaling ropeScaling,
        boolean tieWordEmbeddings,
        boolean attentionBias,
        boolean mlpBias,
        int bosTokenId,
        List<Integer> eosTokenIds) {

    /** Architectures this implementation computes exactly. */
    public static final Set<String> SUPPORTED_ARCHITECTURES = Set.of("LlamaForCausalLM");

    private static final ObjectMapper JSON = new ObjectMapper();

    /**
     * Rope scaling as HF writes it.
     *
     * @param type {@code linear} or {@code llama3}
     * @param factor scaling factor
     * @param lowFreqFactor llama3 only
     * @param highFreqFactor llama3 only
     * @param originalMaxPositionEmbeddings llama3 only
     */
    public record RopeScaling(
            String type,
            double factor,
            double lowFreqFactor,
            double highFreqFactor,
            int originalMaxPositionEmbeddings) {}

    public LlamaConfig {
        if (hiddenSize <= 0 || numHiddenLayers <= 0 || numAttentionHeads <= 0 || vocabSize <= 0) {
            throw new IllegalArgumentException("sizes must be positive");
        }
        if (numKeyValueHeads <= 0 || numAttentionHeads % numKeyValueHeads != 0) {
            throw new IllegalArgumentException(
                    "num_attention_heads ("
                            + numAttentionHeads
                            + ") must be a multiple of num_key_value_heads ("
                            + numKeyValueHeads
                            + ")");
        }
        if (headDim % 2 != 0) {
            throw new IllegalArgumentException("head_dim must be even for rotary embeddings");
        }
        eosTokenIds = List.copyOf(eosTokenIds);
    }

    /** Query heads per key/value head. */
    public int groups() {
        return numAttentionHeads / numKeyValueHeads;
    }

    /**
     * The tiny preset the project ships and tests use: about 3 M parameters, byte-level
     * vocabulary (256 bytes + BOS/EOS/PAD).
     */
    public static LlamaConfig tiny() {
        return new LlamaConfig(
                256, 704, 4, 8, 4, 32, 259, 256, 1e-5, 10000.0, null, true, false, false, 256,
                List.of(257));
    }

    /** A very small random config for unit tests: GQA, tied embeddings. */
    public static LlamaConfig micro(int vocab) {
        return new LlamaConfig(
                32, 48, 2, 4, 2, 8, vocab, 64, 1e-5, 10000.0, null, true, false, false, -1,
                List.of());
    }

    /** Reads {@code config.json} from a model directory. */
    public static LlamaConfig read(Path dir) {
        Path file = dir.resolve("config.json");
        if (!Files.isRegularFile(file)) {
            throw new CheckpointException(file, "config.json", "file not found");
        }
        JsonNode n;
        try {
            n = JSON.readTree(file.toFile());
        } catch (IOException e) {
            throw new CheckpointException(file, "config.json", "not valid JSON: " + e.getMessage());
        }
        if (n == null || !n.isObject()) {
            throw new CheckpointException(file, "config.json", "not a JSON object");
        }
        JsonNode arch = n.get("architectures");
        String modelType = n.path("model_type").asText("");
        if (arch != null && arch.isArray() && arch.size() > 0) {
            String a = arch.get(0).asText();
            if (!SUPPORTED_ARCHITECTURES.contains(a)) {
                throw new CheckpointException(
                        file,
                        "architectures",
                        "unknown architecture '" + a + "'; supported: " + SUPPORTED_ARCHITECTURES);
            }
        } else if (!"llama".equals(modelType)) {
            throw new CheckpointException(
                    file,
                    "model_type",
                    "unknown architecture '" + modelType + "' (no 'architectures'); supported: llama");
        }
        int hidden = req(n, file, "hidden_size");
        int heads = req(n, file, "num_attention_heads");
        int headDim = n.hasNonNull("head_dim") ? n.get("head_dim").asInt() : hidden / heads;
        RopeScaling scaling = null;
        JsonNode rs = n.get("rope_scaling");
        if (rs != null && rs.isObject()) {
            String type = rs.hasNonNull("rope_type") ? rs.get("rope_type").asText() : rs.path("type").asText("");
            if (!type.equals("linear") && !type.equals("llama3") && !type.equals("default")) {
                throw new CheckpointException(
                        file, "rope_scaling.rope_type", "unsupported rope scaling '" + type + "'");
            }
            if (!type.equals("default")) {
                scaling =
                        new RopeScaling(
                                type,
                                rs.path("factor").asDouble(1.0),
                                rs.path("low_freq_factor").asDouble(1.0),
                                rs.path("high_freq_factor").asDouble(4.0),
                                rs.path("original_max_position_embeddings").asInt(8192));
            }
        }
        List<Integer> eos;
        JsonNode e = n.get("eos_token_id");
        if (e == null || e.isNull()) {
            eos = List.of();
        } else if (e.isArray()) {
            eos = new java.util.ArrayList<>();
            for (JsonNode x : e) {
                eos.add(x.asInt());
            }
        } else {
            eos = List.of(e.asInt());
        }
        try {
            return new LlamaConfig(
                    hidden,
                    req(n, file, "intermediate_size"),
                    req(n, file, "num_hidden_layers"),
                    heads,
                    n.hasNonNull("num_key_value_heads") ? n.get("num_key_value_heads").asInt() : heads,
                    headDim,
                    req(n, file, "vocab_size"),
                    n.path("max_position_embeddings").asInt(2048),
                    n.path("rms_norm_eps").asDouble(1e-6),
                    n.path("rope_theta").asDouble(10000.0),
                    scaling,
                    n.path("tie_word_embeddings").asBoolean(false),
                    n.path("attention_bias").asBoolean(false),
                    n.path("mlp_bias").asBoolean(false),
                    n.hasNonNull("bos_token_id") ? n.get("bos_token_id").asInt() : -1,
                    eos);
        } catch (IllegalArgumentException ex) {
            throw new CheckpointException(file, "config.json", ex.getMessage());
        }
    }

    private static int req(JsonNode n, Path file, String field) {
        JsonNode v = n.get(field);
        if (v == null || !v.canConvertToInt()) {
            throw new CheckpointException(file, field, "missing or not an integer");
        }
        return v.asInt();
    }

    /** Writes this config as a HuggingFace {@code config.json}. */
    public void write(Path dir) throws IOException {
        ObjectNode n = JSON.createObjectNode();
        n.putArray("architectures").add("LlamaForCausalLM");
        n.put("model_type", "llama");
        n.put("hidden_size", hiddenSize);
        n.put("intermediate_size", intermediateSize);
        n.put("num_hidden_layers", numHiddenLayers);
        n.put("num_attention_heads", numAttentionHeads);
        n.put("num_key_value_heads", numKeyValueHeads);
        n.put("head_dim", headDim);
        n.put("vocab_size", vocabSize);
        n.put("max_position_embeddings", maxPositionEmbeddings);
        n.put("rms_norm_eps", rmsNormEps);
        n.put("rope_theta", ropeTheta);
        if (ropeScaling != null) {
            ObjectNode rs = n.putObject("rope_scaling");
            rs.put("rope_type", ropeScaling.type());
            rs.put("factor", ropeScaling.factor());
            rs.put("low_freq_factor", ropeScaling.lowFreqFactor());
            rs.put("high_freq_factor", ropeScaling.highFreqFactor());
            rs.put("original_max_position_embeddings", ropeScaling.originalMaxPositionEmbeddings());
        }
        n.put("tie_word_embeddings", tieWordEmbeddings);
        n.put("attention_bias", attentionBias);
        n.put("mlp_bias", mlpBias);
        n.put("hidden_act", "silu");
        n.put("torch_dtype", "float32");
        if (bosTokenId >= 0) {
            n.put("bos_token_id", bosTokenId);
        }
        if (eosTokenIds.size() == 1) {
            n.put("eos_token_id", eosTokenIds.get(0));
        } else if (!eosTokenIds.isEmpty()) {
            eosTokenIds.forEach(n.putArray("eos_token_id")::add);
        }
        Files.createDirectories(dir);
        JSON.writerWithDefaultPrettyPrinter().writeValue(dir.resolve("config.json").toFile(), n);
    }

    /** Inverse rotary frequencies, with rope scaling applied: {@code (headDim/2)}. */
    public float[] inverseFrequencies() {
        int half = headDim / 2;
        float[] inv = new float[half];
        for (int k = 0; k < half; k++) {
            double f = 1.0 / Math.pow(ropeTheta, (2.0 * k) / headDim);
            if (ropeScaling != null) {
                if (ropeScaling.type().equals("linear")) {
                    f /= ropeScaling.factor();
                } else {
                    double old = ropeScaling.originalMaxPositionEmbeddings();
                    double lowWave = old / ropeScaling.lowFreqFactor();
                    double highWave = old / ropeScaling.highFreqFactor();
                    double wave = 2 * Math.PI / f;
                    if (wave > lowWave) {
                        f /= ropeScaling.factor();
                    } else if (wave >= highWave) {
                        double smooth =
                                (old / wave - ropeScaling.lowFreqFactor())
                                        / (ropeScaling.highFreqFactor() - ropeScaling.lowFreqFactor());
                        f = (1 - smooth) * f / ropeScaling.factor() + smooth * f;
                    }
                }
            }
            inv[k] = (float) f;
        }
        return inv;
    }
}
