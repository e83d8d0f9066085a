package dev.morastream.models.checkpoint;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Consumer;

/**
 * The tensors of a HuggingFace-layout model directory: {@code model.safetensors}, or shards listed
 * by {@code model.safetensors.index.json}.
 */
public final class HfCheckpoint {
    public static final String SINGLE = "model.safetensors";
    public static final String INDEX = "model.safetensors.index.json";
    private static final ObjectMapper JSON = new ObjectMapper();

    private HfCheckpoint() {}

    /** Where each tensor of a directory lives. */
    public static Map<String, Path> tensorFiles(Path dir) {
        Path index = dir.resolve(INDEX);
        Path single = dir.resolve(SINGLE);
        Map<String, Path> where = new LinkedHashMap<>();
        if (Files.isRegularFile(index)) {
            JsonNode n;
            try {
                n = JSON.readTree(index.toFile());
            } catch (IOException e) {
                throw new CheckpointException(index, "index", "not valid JSON: " + e.getMessage());
            }
            JsonNode map = n == null ? null : n.get("weight_map");
            if (map == null || !map.isObject()) {
                throw new CheckpointException(index, "weight_map", "missing or not an object");
            }
            map.fields().forEachRemaining(f -> where.put(f.getKey(), dir.resolve(f.getValue().asText())));
            for (Path p : new java.util.HashSet<>(where.values())) {
                if (!Files.isRegularFile(p)) {
                    throw new CheckpointException(index, "weight_map", "shard file not found: " + p.getFileName());
                }
            }
        } else if (Files.isRegularFile(single)) {
            try (Safetensors.Reader r = Safetensors.open(single)) {
                r.entries().keySet().forEach(k -> where.put(k, single));
            }
        } else {
            throw new CheckpointException(dir.resolve(SINGLE), "file", "no " + SINGLE + " nor " + INDEX + " in " + dir);
        }
        return where;
    }

    /**
     * Reads the named tensors (each exactly once, shard by shard) and hands them to {@code sink}.
     * A name absent from the checkpoint raises an error naming the file where it was expected.
     */
    public static void read(Path dir, List<String> names, Consumer<Tensor> sink) {
        Map<String, Path> where = tensorFiles(dir);
        Map<Path, List<String>> byFile = new LinkedHashMap<>();
        for (String n : names) {
            Path p = where.get(n);
            if (p == null) {
                Path f = Files.isRegularFile(dir.resolve(INDEX)) ? dir.resolve(INDEX) : dir.resolve(SINGLE);
                throw new CheckpointException(f, n, "missing tensor");
            }
            byFile.computeIfAbsent(p, k -> new ArrayList<>()).add(n);
        }
        for (Map.Entry<Path, List<String>> e : byFile.entrySet()) {
            try (Safetensors.Reader r = Safetensors.open(e.getKey())) {
                for (String n : e.getValue()) {
                    sink.accept(r.read(n));
                }
            }
        }
    }

    /**
     * Writes tensors into {@code dir}: one {@code model.safetensors} when they fit in {@code
     * maxShardBytes}, else {@code model-0000i-of-0000n.safetensors} plus the index.
     */
    public static void write(Path dir, List<Tensor> tensors, DType dtype, long maxShardBytes, Map<String, String> metadata)
            throws IOException {
        Files.createDirectories(dir);
        List<List<Tensor>> shards = new ArrayList<>();
        List<Tensor> cur = new ArrayList<>();
        long curBytes = 0;
        long total = 0;
        for (Tensor t : tensors) {
            long b = (long) t.data().length * dtype.bytes();
            total += b;
            if (!cur.isEmpty() && curBytes + b > maxShardBytes) {
                shards.add(cur);
                cur = new ArrayList<>();
                curBytes = 0;
            }
            cur.add(t);
            curBytes += b;
        }
        shards.add(cur);
        Map<String, String> meta = new LinkedHashMap<>();
        meta.put("format", "pt");
        if (metadata != null) {
            meta.putAll(metadata);
        }
        Files.deleteIfExists(dir.resolve(INDEX));
        if (shards.size() == 1) {
            Safetensors.write(dir.resolve(SINGLE), shards.get(0), dtype, meta);
            return;
        }
        Files.deleteIfExists(dir.resolve(SINGLE));
        ObjectNode index = JSON.createObjectNode();
        index.putObject("metadata").put("total_size", total);
        ObjectNode map = index.putObject("weight_map");
        for (int i = 0; i < shards.size(); i++) {
            String name = String.format("model-%05d-of-%05d.safetensors", i + 1, shards.size());
            Safetensors.write(dir.resolve(name), shards.get(i), dtype, meta);
            for (Tensor t : shards.get(i)) {
                map.put(t.name(), name);
            }
        }
        JSON.writerWithDefaultPrettyPrinter().writeValue(dir.resolve(INDEX).toFile(), index);
    }
}
