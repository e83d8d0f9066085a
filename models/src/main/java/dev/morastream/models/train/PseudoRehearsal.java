package dev.morastream.models.train;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.morastream.models.checkpoint.AtomicFiles;
import dev.morastream.models.generate.GenerationConfig;
import dev.morastream.models.generate.Generator;
import dev.morastream.models.llama.LinearOp;
import dev.morastream.models.llama.LlamaModel;
import dev.morastream.models.tokenizer.TextTokenizer;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.function.Consumer;
import java.util.stream.Stream;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Pseudo-rehearsal: what the base model knows, in its own words. Prompts from rehearsal sources (the
 * base's task sets, lines of its held-out text, any JSONL a user gives) are answered once by the
 * frozen base (greedy, to the first newline) and cached on disk under a key of the base's identity,
 * the prompts and the answer budget: a changed base (or prompt list) regenerates the answers, an
 * unchanged one reuses them. Replaying these pairs next to a domain's new facts trains the adapter to
 * keep giving the base's answers.
 */
public final class PseudoRehearsal {
    private static final Logger log = LoggerFactory.getLogger(PseudoRehearsal.class);
    private static final ObjectMapper JSON = new ObjectMapper();
    /** Files above this are hashed by samples (header, 16 spread 1 MiB chunks, size), not whole. */
    private static final long HASH_WHOLE_BELOW = 256L << 20;

    /** A prompt and the base's answer. */
    public record Pair(String prompt, String answer) {}

    /** The cache file used and whether it was (re)generated. */
    public record Loaded(List<Pair> pairs, Path file, boolean generated) {}

    private PseudoRehearsal() {}

    /**
     * Prompts from held-out text: {@code count} lines of at least three words spread evenly over
     * {@code text}, each without its last third of words (at least one word is left for the base to
     * answer), e.g. "The capital of Kelbelfaia" from "The capital of Kelbelfaia is Sunix.".
     */
    public static List<String> linePrompts(String text, int count) {
        List<String> lines = text.lines().map(String::strip).filter(l -> l.split(" ").length >= 3).toList();
        List<String> out = new ArrayList<>();
        if (lines.isEmpty() || count <= 0) {
            return out;
        }
        int n = Math.min(count, lines.size());
        for (int i = 0; i < n; i++) {
            String l = lines.get((int) ((long) i * lines.size() / n));
            String[] w = l.split(" ");
            out.add(String.join(" ", java.util.Arrays.copyOf(w, w.length - Math.max(1, w.length / 3))));
        }
        return out;
    }

    /**
     * The identity of a base model directory: SHA-256 over the name, size and content of every
     * regular file in it (not in sub-directories), large files by samples.
     */
    public static String identity(Path modelDir) throws IOException {
        MessageDigest md = sha256();
        List<Path> files;
        try (Stream<Path> s = Files.list(modelDir)) {
            files = s.filter(Files::isRegularFile).sorted().toList();
        }
        byte[] buf = new byte[1 << 20];
        for (Path f : files) {
            long size = Files.size(f);
            md.update((f.getFileName() + "\0" + size + "\0").getBytes(StandardCharsets.UTF_8));
            if (size < HASH_WHOLE_BELOW) {
                try (InputStream in = Files.newInputStream(f)) {
                    for (int n; (n = in.read(buf)) > 0; ) {
                        md.update(buf, 0, n);
                    }
                }
            } else {
                try (var ch = java.nio.channels.FileChannel.open(f)) {
                    for (int k = 0; k <= 16; k++) {
                        long at = k == 0 ? 0 : (size - buf.length) * k / 16;
                        java.nio.ByteBuffer b = java.nio.ByteBuffer.wrap(buf);
                        int n = ch.read(b, at);
                        md.update(buf, 0, Math.max(0, n));
                    }
                }
            }
        }
        return HexFormat.of().formatHex(md.digest());
    }

    /**
     * The base's answers to {@code prompts}, from {@code cacheDir} when a cache of the same key is
     * there and intact, otherwise generated with {@code base} (no adapter) and written there; caches
     * of other keys in {@code cacheDir} are deleted. A damaged cache is regenerated with a warning.
     *
     * @param progress receives a line every 128 answers while generating
     */
    public static Loaded loadOrGenerate(Path cacheDir, String baseIdentity, List<String> prompts, int maxNewTokens,
            LlamaModel base, TextTokenizer tok, Consumer<String> progress) throws IOException {
        String key = key(baseIdentity, prompts, maxNewTokens);
        Path file = cacheDir.resolve("pseudo-rehearsal-" + key.substring(0, 16) + ".jsonl");
        if (Files.isRegularFile(file)) {
            try {
                List<Pair> pairs = read(file, key, prompts.size());
                return new Loaded(pairs, file, false);
            } catch (IOException | RuntimeException e) {
                log.warn("pseudo-rehearsal cache {} is damaged ({}): answering its {} prompts again", file, e.getMessage(),
                        prompts.size());
            }
        }
        Files.createDirectories(cacheDir);
        Generator gen = new Generator(base, tok, LinearOp.PLAIN);
        GenerationConfig cfg = new GenerationConfig(maxNewTokens, 0, 1.0, 0, List.of("\n"), true);
        List<Pair> pairs = new ArrayList<>();
        StringBuilder out = new StringBuilder();
        ObjectNode head = JSON.createObjectNode();
        head.put("key", key);
        head.put("base", baseIdentity);
        head.put("prompts", prompts.size());
        head.put("max_new_tokens", maxNewTokens);
        out.append(JSON.writeValueAsString(head)).append('\n');
        // answered batched (the same answers as one generation each), in chunks for progress
        List<String> answers = new ArrayList<>();
        for (int at = 0; at < prompts.size(); at += 128) {
            List<int[]> ids = prompts.subList(at, Math.min(prompts.size(), at + 128)).stream()
                    .map(p -> tok.encodeFramed(p, false)).toList();
            gen.greedyBatch(ids, cfg).forEach(a -> answers.add(a.text()));
            progress.accept("pseudo-rehearsal: " + answers.size() + "/" + prompts.size() + " prompts answered by the base");
        }
        for (int i = 0; i < prompts.size(); i++) {
            String p = prompts.get(i);
            String answer = answers.get(i);
            pairs.add(new Pair(p, answer));
            ObjectNode n = JSON.createObjectNode();
            n.put("prompt", p);
            n.put("answer", answer);
            out.append(JSON.writeValueAsString(n)).append('\n');
        }
        AtomicFiles.write(file, out.toString().getBytes(StandardCharsets.UTF_8));
        try (Stream<Path> s = Files.list(cacheDir)) {
            for (Path old : s.filter(f -> f.getFileName().toString().startsWith("pseudo-rehearsal-") && !f.equals(file)).toList()) {
                Files.deleteIfExists(old);
            }
        }
        return new Loaded(pairs, file, true);
    }

    private static List<Pair> read(Path file, String key, int expected) throws IOException {
        List<String> lines = Files.readAllLines(file, StandardCharsets.UTF_8);
        if (lines.isEmpty()) {
            throw new IOException("empty");
        }
        JsonNode head = JSON.readTree(lines.get(0));
        if (!key.equals(head.path("key").asText())) {
            throw new IOException("key " + head.path("key").asText() + " is not " + key);
        }
        List<Pair> pairs = new ArrayList<>();
        for (int i = 1; i < lines.size(); i++) {
            JsonNode n = JSON.readTree(lines.get(i));
            if (!n.path("prompt").isTextual() || !n.path("answer").isTextual()) {
                throw new IOException("line " + (i + 1) + " has no prompt and answer");
            }
            pairs.add(new Pair(n.get("prompt").asText(), n.get("answer").asText()));
        }
        if (pairs.size() != expected) {
            throw new IOException(pairs.size() + " answers for " + expected + " prompts");
        }
        return pairs;
    }

    private static String key(String baseIdentity, List<String> prompts, int maxNewTokens) {
        MessageDigest md = sha256();
        md.update((baseIdentity + "\0" + maxNewTokens + "\0").getBytes(StandardCharsets.UTF_8));
        for (String p : prompts) {
            md.update((p + "\0").getBytes(StandardCharsets.UTF_8));
        }
        return HexFormat.of().formatHex(md.digest());
    }

    /**
     * The pairs as training rows of {@code seqLen + 1} tokens (framed and packed like prompt /
     * completion records; the completion mask marks the base's answers), in a seeded shuffled order.
     *
     * @return {tokens rows, completion-mask rows}
     */
    public static Rows rows(List<Pair> pairs, TextTokenizer tok, int seqLen, long seed) {
        List<Pair> order = new ArrayList<>(pairs);
        java.util.Collections.shuffle(order, new java.util.Random(seed));
        DocumentPacker packer = new DocumentPacker(tok, seqLen);
        for (Pair p : order) {
            if (!p.answer().isBlank()) {
                packer.add(new DocumentPacker.Document(p.prompt(), p.answer()));
            }
        }
        List<int[]> tokens = new ArrayList<>();
        List<float[]> completion = new ArrayList<>();
        for (int i = 0; i < packer.windows(); i++) {
            float[] c = new float[seqLen];
            tokens.add(packer.window(i, c));
            completion.add(c);
        }
        return new Rows(tokens, completion);
    }

    /** Packed rows: tokens {@code (T + 1)} and completion masks {@code (T)}. */
    public record Rows(List<int[]> tokens, List<float[]> completion) {}

    private static MessageDigest sha256() {
        try {
            return MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }
}
