package dev.morastream.models.adapters;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.morastream.models.checkpoint.CheckpointException;
import dev.morastream.models.checkpoint.DType;
import dev.morastream.models.checkpoint.Safetensors;
import dev.morastream.models.checkpoint.Tensor;
import dev.morastream.models.llama.LlamaModel;
import ai.djl.ndarray.NDArray;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Adapter directories in PEFT layout: {@code adapter_config.json} + {@code
 * adapter_model.safetensors}. LoRA files load in PEFT unchanged; MoRA files carry {@code use_mora}
 * and {@code mora_type} as the authors' PEFT fork expects, with {@code M} in the {@code lora_A}
 * slot and a copy in {@code lora_B}. A {@code morastream} block records what wrote the file, the
 * format version and the exact variant (the reference has no type for decoupling or truncation).
 */
public final class AdapterFiles {
    public static final String CONFIG = "adapter_config.json";
    public static final String WEIGHTS = "adapter_model.safetensors";
    public static final int FORMAT_VERSION = 1;
    private static final ObjectMapper JSON = new ObjectMapper();

    private AdapterFiles() {}

    /** Writes the adapters of {@code set} into {@code dir}. */
    public static void save(AdapterSet set, Path dir, String baseModel) throws IOException {
        AdapterSpec s = set.spec();
        Files.createDirectories(dir);
        ObjectNode c = JSON.createObjectNode();
        c.put("peft_type", s.method() == AdapterSpec.Method.FULL ? "FULL" : "LORA");
        c.put("task_type", "CAUSAL_LM");
        c.put("base_model_name_or_path", baseModel);
        c.put("r", s.r());
        c.put("lora_alpha", s.alpha());
        c.put("lora_dropout", s.dropout());
        c.put("bias", "none");
        c.put("fan_in_fan_out", false);
        c.put("inference_mode", true);
        s.targetModules().forEach(c.putArray("target_modules")::add);
        if (s.method() == AdapterSpec.Method.MORA) {
            c.put("use_mora", true);
            MoraVariant v = s.resolvedVariant();
            c.put("mora_type", v.referenceType() > 0 ? v.referenceType() : 1);
        }
        ObjectNode ms = c.putObject("morastream");
        ms.put("format_version", FORMAT_VERSION);
        ms.put("written_by", "morastream");
        ms.put("method", s.method().id());
        if (s.method() == AdapterSpec.Method.MORA) {
            ms.put("variant", s.resolvedVariant().id());
        }
        ms.put("rotation_threshold", s.rotationThreshold());
        ms.put("seed", s.seed());
        List<Tensor> tensors = new ArrayList<>();
        for (Map.Entry<String, NDArray> e : set.trainable().entrySet()) {
            NDArray a = e.getValue();
            tensors.add(new Tensor(e.getKey(), a.getShape().getShape(), a.toFloatArray()));
            if (s.method() == AdapterSpec.Method.MORA) {
                tensors.add(new Tensor(e.getKey().replace("lora_A.weight", "lora_B.weight"), a.getShape().getShape(), a.toFloatArray()));
            }
        }
        Map<String, String> meta = new LinkedHashMap<>();
        meta.put("format", "pt");
        meta.put("written_by", "morastream");
        Safetensors.write(dir.resolve(WEIGHTS), tensors, DType.F32, meta);
        Path tmp = dir.resolve(CONFIG + ".tmp");
        JSON.writerWithDefaultPrettyPrinter().writeValue(tmp.toFile(), c);
        Files.move(tmp, dir.resolve(CONFIG), java.nio.file.StandardCopyOption.REPLACE_EXISTING,
                java.nio.file.StandardCopyOption.ATOMIC_MOVE);
    }

    /** Reads the spec of an adapter directory. */
    public static AdapterSpec readSpec(Path dir) {
        Path f = dir.resolve(CONFIG);
        if (!Files.isRegularFile(f)) {
            throw new CheckpointException(f, CONFIG, "file not found");
        }
        JsonNode c;
        try {
            c = JSON.readTree(f.toFile());
        } catch (IOException e) {
            throw new CheckpointException(f, CONFIG, "not valid JSON: " + e.getMessage());
        }
        String peft = c.path("peft_type").asText("");
        JsonNode ms = c.path("morastream");
        AdapterSpec.Method method;
        if (ms.has("method")) {
            method = AdapterSpec.Method.parse(ms.get("method").asText());
        } else if ("LORA".equals(peft)) {
            method = c.path("use_mora").asBoolean(false) ? AdapterSpec.Method.MORA : AdapterSpec.Method.LORA;
        } else {
            throw new CheckpointException(f, "peft_type", "unsupported adapter type '" + peft + "' (LORA, or MoRA via use_mora)");
        }
        MoraVariant variant = null;
        if (method == AdapterSpec.Method.MORA) {
            variant = ms.has("variant") ? MoraVariant.parse(ms.get("variant").asText())
                    : MoraVariant.parse(String.valueOf(c.path("mora_type").asInt(1)));
        }
        List<String> targets = new ArrayList<>();
        JsonNode t = c.get("target_modules");
        if (t != null && t.isArray()) {
            t.forEach(x -> targets.add(x.asText()));
        } else if (t != null && t.isTextual()) {
            throw new CheckpointException(f, "target_modules", "regular-expression target_modules are not supported: " + t.asText());
        }
        int r = c.path("r").asInt(0);
        return new AdapterSpec(method, variant, r, c.path("lora_alpha").asDouble(r), c.path("lora_dropout").asDouble(0),
                targets, ms.path("rotation_threshold").asInt(AdapterSpec.DEFAULT_ROTATION_THRESHOLD), ms.path("seed").asLong(0));
    }

    /**
     * Loads the adapter stored in {@code dir} for a caller that has {@code model} to itself (any
     * method, {@link AdapterSet#merge} allowed; see {@link AdapterSet#createOwning}). Apply it by
     * passing its {@link AdapterSet#op()} to each forward.
     */
    public static AdapterSet load(Path dir, LlamaModel model) {
        return load(dir, model, true);
    }

    /**
     * Loads the adapter stored in {@code dir} as a set that never writes the model's weights, to
     * share the model with other versions, and {@linkplain AdapterSet#freeze freezes} it (it is
     * only read: serving, evaluation); full fine-tuning adapters cannot be loaded this way.
     */
    public static AdapterSet loadDetached(Path dir, LlamaModel model) {
        return load(dir, model, false).freeze();
    }

    /** Loads the adapter in {@code dir} as an owning ({@link AdapterSet#createOwning}) or shared set. */
    public static AdapterSet load(Path dir, LlamaModel model, boolean owning) {
        AdapterSpec spec = readSpec(dir);
        Path wf = dir.resolve(WEIGHTS);
        if (!Files.isRegularFile(wf)) {
            throw new CheckpointException(wf, WEIGHTS, "file not found");
        }
        AdapterSet set = owning ? AdapterSet.createOwning(model, spec) : AdapterSet.create(model, spec);
        try (Safetensors.Reader r = Safetensors.open(wf)) {
            for (Map.Entry<String, NDArray> e : set.trainable().entrySet()) {
                String name = e.getKey();
                Tensor tensor = r.read(name); // a missing tensor raises an error naming it
                long[] want = e.getValue().getShape().getShape();
                if (!Arrays.equals(want, tensor.shape())) {
                    throw new CheckpointException(wf, name, "wrong shape " + Arrays.toString(tensor.shape())
                            + ", the model and adapter_config.json imply " + Arrays.toString(want));
                }
                dev.morastream.models.llama.Tensors.assign(e.getValue(), tensor.data());
            }
        } catch (RuntimeException e) {
            set.close();
            throw e;
        }
        return set;
    }
}
