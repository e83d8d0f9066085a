package dev.morastream.streams.state;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * The records of a {@link KafkaStateStore} topic, keyed (UTF-8 strings) so that compaction keeps
 * exactly what is current:
 *
 * <pre>
 * c/KEY/COMMIT/I   chunk I of the value KEY got in commit COMMIT (raw bytes); a tombstone once replaced
 * m/KEY            the manifest of KEY: JSON {"format": "morastream-state", "version": 1, "commit": …,
 *                  "keys": [every key of that commit], "deleted": false, "chunks": n, "size": bytes,
 *                  "sha256": hex, "writer": …, "at": epoch ms}; a deleted key keeps a small manifest
 *                  with "deleted": true (not a tombstone: see {@link KafkaStateStore} on why)
 * </pre>
 *
 * A commit's generation is its commit id (random, unique), so two commits never share a chunk key.
 */
final class StateRecords {
    static final String FORMAT = "morastream-state";
    static final int VERSION = 1;
    static final String MANIFEST = "m/";
    static final String CHUNK = "c/";
    private static final ObjectMapper JSON = new ObjectMapper();

    private StateRecords() {}

    static String manifestKey(String key) {
        return MANIFEST + key;
    }

    static String chunkKey(String key, String commit, int index) {
        return CHUNK + key + "/" + commit + "/" + index;
    }

    /** The value's pieces of at most {@code chunkBytes} each (none for an empty value). */
    static List<byte[]> split(byte[] value, int chunkBytes) {
        List<byte[]> out = new ArrayList<>();
        for (int from = 0; from < value.length; from += chunkBytes) {
            out.add(Arrays.copyOfRange(value, from, Math.min(value.length, from + chunkBytes)));
        }
        return out;
    }

    /** What one manifest record says. */
    record Manifest(String key, String commit, List<String> commitKeys, boolean deleted, int chunks, long size, String sha256,
            String writer, long at) {
        Manifest {
            commitKeys = List.copyOf(commitKeys);
        }

        static Manifest of(String key, String commit, List<String> commitKeys, byte[] value, int chunkBytes, String writer) {
            int n = (int) ((value.length + (long) chunkBytes - 1) / chunkBytes);
            return new Manifest(key, commit, commitKeys, false, n, value.length, Digests.sha256Hex(value), writer, System.currentTimeMillis());
        }

        static Manifest deletion(String key, String commit, List<String> commitKeys, String writer) {
            return new Manifest(key, commit, commitKeys, true, 0, 0, "", writer, System.currentTimeMillis());
        }

        byte[] encode() {
            ObjectNode o = JSON.createObjectNode();
            o.put("format", FORMAT).put("version", VERSION).put("commit", commit);
            commitKeys.forEach(o.putArray("keys")::add);
            o.put("deleted", deleted).put("chunks", chunks).put("size", size).put("sha256", sha256).put("writer", writer).put("at", at);
            try {
                return JSON.writeValueAsBytes(o);
            } catch (IOException e) {
                throw new IllegalStateException(e);
            }
        }

        /** @throws IllegalArgumentException when {@code value} is not a manifest this version reads */
        static Manifest decode(String key, byte[] value) {
            JsonNode o;
            try {
                o = JSON.readTree(value);
            } catch (IOException e) {
                throw new IllegalArgumentException("manifest of " + key + " is not JSON: " + e.getMessage());
            }
            if (o == null || !FORMAT.equals(o.path("format").asText()) || o.path("version").asInt() != VERSION) {
                throw new IllegalArgumentException("manifest of " + key + " is not " + FORMAT + " version " + VERSION + ": "
                        + (o == null ? "empty" : "format " + o.path("format").asText("?") + ", version " + o.path("version").asText("?")));
            }
            List<String> keys = new ArrayList<>();
            o.path("keys").forEach(k -> keys.add(k.asText()));
            if (!o.hasNonNull("commit") || !keys.contains(key) || o.path("chunks").asInt(-1) < 0 || o.path("size").asLong(-1) < 0) {
                throw new IllegalArgumentException("manifest of " + key + " is incomplete: " + o);
            }
            return new Manifest(key, o.path("commit").asText(), keys, o.path("deleted").asBoolean(), o.path("chunks").asInt(),
                    o.path("size").asLong(), o.path("sha256").asText(), o.path("writer").asText(), o.path("at").asLong());
        }
    }
}
