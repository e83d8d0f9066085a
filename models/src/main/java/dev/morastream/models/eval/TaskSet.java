package dev.morastream.models.eval;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.morastream.models.generate.GenerationConfig;
import dev.morastream.models.generate.Generator;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Downstream tasks with known answers, as JSONL lines {@code {"set", "prompt", "answer"}}, scored by
 * greedy generation: exact match and the paper's character-level accuracy per set.
 */
public final class TaskSet {
    private static final ObjectMapper JSON = new ObjectMapper();

    /** One prompt and the answer expected right after it. */
    public record Item(String set, String prompt, String answer) {}

    /** Scores of one set. */
    public record Score(String set, int items, double exactMatch, double charAccuracy) {}

    private TaskSet() {}

    /** Reads a JSONL file; a bad line is an error naming the file and line. */
    public static List<Item> load(Path file) throws IOException {
        List<Item> out = new ArrayList<>();
        List<String> lines = Files.readAllLines(file, StandardCharsets.UTF_8);
        for (int i = 0; i < lines.size(); i++) {
            String l = lines.get(i).strip();
            if (l.isEmpty()) {
                continue;
            }
            JsonNode n;
            try {
                n = JSON.readTree(l);
            } catch (IOException e) {
                throw new IOException(file + ":" + (i + 1) + ": not JSON: " + e.getMessage(), e);
            }
            if (n == null || !n.path("prompt").isTextual() || !n.path("answer").isTextual()) {
                throw new IOException(file + ":" + (i + 1) + ": needs string fields 'prompt' and 'answer'");
            }
            out.add(new Item(n.path("set").asText("tasks"), n.get("prompt").asText(), n.get("answer").asText()));
        }
        return out;
    }

    /**
     * Greedy answers cut at the first newline, compared with the trimmed expected answer.
     *
     * @param maxNewTokens generation budget per item
     * @return scores per set, plus an {@code all} entry
     */
    public static List<Score> evaluate(Generator gen, List<Item> items, int maxNewTokens) {
        Map<String, double[]> acc = new LinkedHashMap<>(); // set -> {n, em, char}
        GenerationConfig cfg = new GenerationConfig(maxNewTokens, 0, 1.0, 0, List.of("\n"), true);
        for (Item it : items) {
            String got = gen.generate(it.prompt(), cfg, s -> { }).text().strip();
            String want = it.answer().strip();
            for (String key : List.of(it.set(), "all")) {
                double[] a = acc.computeIfAbsent(key, k -> new double[3]);
                a[0]++;
                a[1] += TextMetrics.exactMatch(got, want) ? 1 : 0;
                a[2] += TextMetrics.charAccuracy(got, want);
            }
        }
        List<Score> out = new ArrayList<>();
        acc.forEach((k, a) -> out.add(new Score(k, (int) a[0], a[1] / a[0], a[2] / a[0])));
        return out;
    }
}
