package dev.morastream.ops.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDManager;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.morastream.models.adapters.AdapterFiles;
import dev.morastream.models.adapters.AdapterSet;
import dev.morastream.models.adapters.AdapterSpec;
import dev.morastream.models.adapters.MoraVariant;
import dev.morastream.models.llama.LlamaModel;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

/** The command line against the shipped tiny model, in-process. */
class CliTest {
    static final Path TINY = Path.of("..", "base-models", "tiny").toAbsolutePath().normalize();
    static final ObjectMapper JSON = new ObjectMapper();

    /** Runs the CLI, returning exit code and stdout. */
    static String[] run(String... args) {
        PrintStream old = System.out;
        ByteArrayOutputStream buf = new ByteArrayOutputStream();
        StringWriter err = new StringWriter();
        int code;
        try {
            System.setOut(new PrintStream(buf, true, StandardCharsets.UTF_8));
            CommandLine cl = MoraCli.commandLine();
            cl.setErr(new PrintWriter(err));
            code = cl.execute(args);
        } finally {
            System.setOut(old);
        }
        return new String[] {String.valueOf(code), buf.toString(StandardCharsets.UTF_8), err.toString()};
    }

    static List<JsonNode> jsonLines(String out) throws Exception {
        List<JsonNode> l = new ArrayList<>();
        for (String line : out.split("\n")) {
            if (line.startsWith("{")) {
                l.add(JSON.readTree(line));
            }
        }
        return l;
    }

    @Test
    void aMissingFileIsNamedAsMissing() {
        String[] r = run("bench", "continual", "--model", "/nonexistent/model", "--steps", "1");
        assertTrue(r[2].contains("no such file: /nonexistent/model/eval/tasks.jsonl"), r[2]);
        assertTrue(!r[0].equals("0"), "exit code " + r[0]);
    }

    @Test
    void everyCommandHasHelp() {
        List<String[]> paths = new ArrayList<>();
        collect(MoraCli.commandLine(), new ArrayList<>(), paths);
        assertTrue(paths.size() >= 10, "commands found: " + paths.size());
        for (String[] p : paths) {
            String[] args = java.util.Arrays.copyOf(p, p.length + 1);
            args[p.length] = "--help";
            String[] r = run(args);
            assertEquals("0", r[0], String.join(" ", p) + " --help failed: " + r[2]);
            assertTrue(r[1].contains("Usage:"), String.join(" ", p) + " --help printed no usage");
        }
    }

    private static void collect(CommandLine cl, List<String> prefix, List<String[]> out) {
        out.add(prefix.toArray(new String[0]));
        cl.getSubcommands().forEach((name, sub) -> {
            if (!name.equals("help")) {
                List<String> p = new ArrayList<>(prefix);
                p.add(name);
                collect(sub, p, out);
            }
        });
    }

    @Test
    void perplexityOfTheShippedModelAsJson() throws Exception {
        String[] r = run("eval", "perplexity", "--model", TINY.toString(), "--file",
                TINY.resolve("eval/heldout.txt").toString(), "--json");
        assertEquals("0", r[0], r[2]);
        JsonNode o = jsonLines(r[1]).get(0);
        assertTrue(o.get("tokens").asLong() > 10_000);
        assertTrue(o.get("loss").asDouble() < 1.0, "held-out loss " + o.get("loss"));
        assertEquals(Math.exp(o.get("loss").asDouble()), o.get("perplexity").asDouble(), 1e-6);
    }

    @Test
    void generateAnswersAsJsonAndBadInputIsAClearError() throws Exception {
        String[] r = run("generate", "--model", TINY.toString(), "--prompt", "The capital of", "--max-tokens", "12", "--json");
        assertEquals("0", r[0], r[2]);
        JsonNode o = jsonLines(r[1]).get(0);
        assertTrue(o.get("tokens").asInt() > 0 && o.get("tokens").asInt() <= 12);
        assertTrue(o.has("text") && o.has("finish_reason"));
        String[] bad = run("generate", "--model", "/nonexistent/model", "--prompt", "x");
        assertEquals("1", bad[0]);
        assertTrue(bad[2].contains("config.json"), bad[2]);
        String[] neg = run("generate", "--model", TINY.toString(), "--prompt", "x", "--max-tokens", "0");
        assertEquals("1", neg[0]);
        assertTrue(neg[2].contains("--max-tokens"), neg[2]);
    }

    @Test
    void adaptersMergeWritesAnEquivalentCheckpoint(@TempDir Path dir) throws Exception {
        Path adapter = dir.resolve("adapter");
        float[] want;
        try (NDManager root = NDManager.newBaseManager(); LlamaModel model = LlamaModel.load(TINY, root);
                AdapterSet set = AdapterSet.create(model, AdapterSpec.mora(8, MoraVariant.ROTATION)).randomize(1, 0.01)) {
            AdapterFiles.save(set, adapter, TINY.toString());
            want = logits(model, set.op());
        }
        String[] r = run("adapters", "merge", "--model", TINY.toString(), "--adapter", adapter.toString(), "--out",
                dir.resolve("merged").toString());
        assertEquals("0", r[0], r[2]);
        try (NDManager root = NDManager.newBaseManager(); LlamaModel merged = LlamaModel.load(dir.resolve("merged"), root)) {
            float[] got = logits(merged, dev.morastream.models.llama.LinearOp.PLAIN);
            double d = 0;
            for (int i = 0; i < got.length; i++) {
                d = Math.max(d, Math.abs(got[i] - want[i]));
            }
            assertTrue(d < 1e-3, "merged checkpoint differs from base + adapter by " + d);
        }
    }

    private static float[] logits(LlamaModel model, dev.morastream.models.llama.LinearOp op) {
        try (NDManager m = model.manager().newSubManager()) {
            return model.forward(model.ids(m, new int[][] {{256, 84, 104, 101, 32, 99, 97, 112}}), null, op).toFloatArray();
        }
    }

    @Test
    void trainCheckpointsAndARerunResumesWhereItStopped(@TempDir Path dir) throws Exception {
        Path data = dir.resolve("facts.jsonl");
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < 12; i++) {
            sb.append("{\"prompt\": \"Q: What is the colour of gem ").append(i).append("?\\nA:\", \"completion\": \" ")
                    .append(i % 2 == 0 ? "teal" : "amber").append("\"}\n");
        }
        java.nio.file.Files.writeString(data, sb.toString());
        String[] common = {"train", "--model", TINY.toString(), "--data", data.toString(), "--method", "mora", "--rank", "4",
            "--batch-size", "2", "--seq-len", "32", "--dropout", "0", "--checkpoint-every", "3", "--lr", "5e-3", "--json"};
        String[] a = run(concat(common, "--out", dir.resolve("a").toString(), "--steps", "6"));
        assertEquals("0", a[0], a[2]);
        String[] b1 = run(concat(common, "--out", dir.resolve("b").toString(), "--steps", "3"));
        assertEquals("0", b1[0], b1[2]);
        String[] b2 = run(concat(common, "--out", dir.resolve("b").toString(), "--steps", "6"));
        assertEquals("0", b2[0], b2[2]);
        List<JsonNode> full = jsonLines(a[1]);
        List<JsonNode> resumed = jsonLines(b2[1]);
        assertEquals(6, full.size(), a[1]);
        assertEquals(3, resumed.size());
        assertEquals(4, resumed.get(0).get("step").asInt(), "the rerun resumes after the checkpoint of step 3");
        for (int i = 0; i < 3; i++) {
            assertEquals(full.get(3 + i).get("step").asInt(), resumed.get(i).get("step").asInt());
            assertEquals(full.get(3 + i).get("loss").asDouble(), resumed.get(i).get("loss").asDouble(), 2e-2);
        }
        assertEquals(full.get(3).get("loss").asDouble(), resumed.get(0).get("loss").asDouble(), 1e-5, "first step after resume");
        assertTrue(java.nio.file.Files.isRegularFile(dir.resolve("b/adapter/adapter_model.safetensors")));
        java.nio.file.Files.writeString(dir.resolve("bad.jsonl"), "{\"text\": \"ok\"}\n{\"prompt\": 3}\n");
        String[] bad = run("train", "--model", TINY.toString(), "--data", dir.resolve("bad.jsonl").toString(), "--out",
                dir.resolve("c").toString());
        assertEquals("1", bad[0]);
        assertTrue(bad[2].contains("bad.jsonl:2"), bad[2]);
    }

    private static String[] concat(String[] a, String... b) {
        String[] out = java.util.Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, out, a.length, b.length);
        return out;
    }

    @Test
    void benchmarksPrintTheirJsonFields() throws Exception {
        String[] s = run("bench", "step", "--model", TINY.toString(), "--rank", "8", "--batch-size", "1", "--seq-len", "16",
                "--warmup", "1", "--steps", "2", "--json");
        assertEquals("0", s[0], s[2]);
        List<JsonNode> rows = jsonLines(s[1]);
        assertEquals(2 + MoraVariant.values().length, rows.size());
        for (JsonNode n : rows) {
            for (String f : List.of("method", "variant", "trainable_params", "ms_per_step", "tokens_per_s", "dtype", "gflop_per_step",
                    "gflops_per_s", "peak_gflops_per_s", "fraction_of_peak", "loss", "loss_diff_to_f32")) {
                assertTrue(n.has(f), "missing " + f + " in " + n);
            }
            assertEquals("F32", n.get("dtype").asText());
            assertEquals(0.0, n.get("loss_diff_to_f32").asDouble(), n.toString());
            assertTrue(n.get("gflop_per_step").asDouble() > 0 && n.get("peak_gflops_per_s").asDouble() > 0, n.toString());
            assertEquals(n.get("gflops_per_s").asDouble() / n.get("peak_gflops_per_s").asDouble(), n.get("fraction_of_peak").asDouble(), 1e-9);
        }
        String[] bf = run("bench", "step", "--model", TINY.toString(), "--dtype", "BF16", "--steps", "1", "--json");
        assertEquals("2", bf[0], "BF16 is refused on DJL 0.36 (no bfloat16 in its JNI type table): " + bf[1]);
        assertTrue(bf[2].contains("--dtype BF16 is not available") && bf[2].contains("use F32"), bf[2]);
        assertEquals("", bf[1].trim(), "nothing measured");
        String[] only = run("bench", "step", "--model", TINY.toString(), "--batch-size", "1", "--seq-len", "8", "--warmup", "0",
                "--steps", "1", "--methods", "lora,rotation,full", "--json");
        assertEquals("0", only[0], only[2]);
        assertEquals(List.of("lora", "mora", "full"), jsonLines(only[1]).stream().map(n -> n.get("method").asText()).toList());
        String[] rnd = run("bench", "step", "--random", "32,2,48,4,2", "--rank", "4", "--batch-size", "2", "--seq-len", "8",
                "--warmup", "0", "--steps", "1", "--methods", "full", "--json");
        assertEquals("0", rnd[0], rnd[2]);
        // StepFlopsTest's micro shape with vocab 259: 1,638,400 + (259 - 64) x 32 x 16 tokens x 4 (frozen lm_head)
        assertEquals(1_638_400 + 195 * 32 * 16 * 4, jsonLines(rnd[1]).get(0).get("gflop_per_step").asDouble() * 1e9, 1e-3);
        String[] badDtype = run("bench", "step", "--model", TINY.toString(), "--dtype", "FP16", "--steps", "1");
        assertEquals("2", badDtype[0]);
        assertTrue(badDtype[2].contains("dtype must be F32 or BF16"), badDtype[2]);
        String[] m = run("bench", "memorize", "--model", TINY.toString(), "--method", "mora", "--rank", "8", "--pairs", "2",
                "--steps", "2", "--eval-every", "1", "--json");
        assertEquals("0", m[0], m[2]);
        List<JsonNode> pts = jsonLines(m[1]);
        assertEquals(3, pts.size());
        for (String f : List.of("method", "variant", "rank", "trainable_params", "step", "loss", "char_acc", "exact_match")) {
            assertTrue(pts.get(0).has(f), "missing " + f + " in " + pts.get(0));
        }
    }

    @Test
    void benchServePrintsOneLinePerConcurrencyLevel() throws Exception {
        String[] s = run("bench", "serve", "--model", TINY.toString(), "--concurrency", "2", "--adapters", "2", "--max-tokens", "4",
                "--requests", "2", "--json");
        assertEquals("0", s[0], s[2]);
        List<JsonNode> rows = jsonLines(s[1]);
        assertEquals(List.of(1, 2), rows.stream().map(n -> n.get("concurrency").asInt()).toList());
        for (JsonNode n : rows) {
            for (String f : List.of("concurrency", "adapters", "requests_per_s", "output_tokens_per_s", "ttft_p50_ms", "ttft_p99_ms",
                    "itl_p50_ms", "swap_ms")) {
                assertTrue(n.has(f), "missing " + f + " in " + n);
            }
            assertEquals(2, n.get("adapters").asInt());
            assertTrue(n.get("output_tokens_per_s").asDouble() > 0, n.toString());
            assertTrue(n.get("swap_ms").isNumber(), "the promoted version served a token: " + n);
        }
    }
}
