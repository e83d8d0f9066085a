package dev.morastream.ops.cli;

import ai.djl.ndarray.NDManager;
import dev.morastream.models.checkpoint.DType;
import dev.morastream.models.corpus.SyntheticCorpus;
import dev.morastream.models.corpus.SyntheticWorld;
import dev.morastream.models.llama.LlamaConfig;
import dev.morastream.models.llama.LlamaModel;
import dev.morastream.models.tokenizer.ByteTokenizer;
import dev.morastream.models.train.PretrainConfig;
import dev.morastream.models.train.Pretrainer;
import java.io.BufferedWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** Pretrains a base model from scratch on the deterministic synthetic corpus. */
@Command(name = "pretrain", mixinStandardHelpOptions = true,
        description = {"Pretrain a base model from scratch on the synthetic corpus and write an HF checkpoint.",
            "All weights, AdamW, warmup + cosine, gradient clipping, on the project's deterministic synthetic corpus;",
            "with its held-out set (eval/heldout.txt) and downstream tasks (eval/tasks.jsonl).",
            "The shipped model base-models/tiny was made by: bin/mora pretrain --out base-models/tiny"})
public final class PretrainCommand implements Callable<Integer> {
    @Option(names = "--out", required = true, description = "Output model directory.")
    Path out;

    @Option(names = "--preset", defaultValue = "tiny", description = "Architecture preset: tiny (default) or micro.")
    String preset;

    private static final PretrainConfig D = PretrainConfig.tinyDefaults();

    @Option(names = "--steps", description = "Optimizer steps (default ${DEFAULT-VALUE}).")
    int steps = D.steps();

    @Option(names = "--batch-size", description = "Sequences per step (default ${DEFAULT-VALUE}).")
    int batchSize = D.batchSize();

    @Option(names = "--seq-len", description = "Tokens per sequence (default ${DEFAULT-VALUE}).")
    int seqLen = D.seqLen();

    @Option(names = "--lr", description = "Peak learning rate (default ${DEFAULT-VALUE}).")
    double lr = D.lr();

    @Option(names = "--warmup", description = "Warmup steps (default ${DEFAULT-VALUE}).")
    int warmup = D.warmupSteps();

    @Option(names = "--weight-decay", description = "AdamW weight decay (default ${DEFAULT-VALUE}).")
    double weightDecay = D.weightDecay();

    @Option(names = "--clip", description = "Gradient norm clip (default ${DEFAULT-VALUE}).")
    double clip = D.clipNorm();

    @Option(names = "--seed", description = "Seed of initialisation and data order (default ${DEFAULT-VALUE}).")
    long seed = D.seed();

    @Option(names = "--eval-every", description = "Steps between held-out evaluations (default ${DEFAULT-VALUE}).")
    int evalEvery = D.evalEvery();

    @Option(names = "--dtype", defaultValue = "F16", description = "Stored dtype: F32, F16 or BF16 (default ${DEFAULT-VALUE}).")
    DType dtype;

    @Option(names = "--json", description = "Print progress and the result as JSON lines on stdout.")
    boolean json;

    @Override
    public Integer call() throws Exception {
        LlamaConfig config = switch (preset) {
            case "tiny" -> LlamaConfig.tiny();
            case "micro" -> LlamaConfig.micro(ByteTokenizer.VOCAB);
            default -> throw new IllegalArgumentException("unknown preset '" + preset + "' (tiny, micro)");
        };
        PretrainConfig pc = new PretrainConfig(steps, batchSize, Math.min(seqLen, config.maxPositionEmbeddings()), lr,
                warmup, 0.1, weightDecay, clip, seed, evalEvery, 10);
        SyntheticCorpus corpus = new SyntheticCorpus(SyntheticWorld.base());
        ByteTokenizer tok = new ByteTokenizer();
        try (NDManager root = NDManager.newBaseManager();
                LlamaModel model = LlamaModel.random(config, seed, root)) {
            System.err.printf(Locale.ROOT, "pretraining %,d parameters for %d steps of %d x %d tokens on %s%n",
                    model.parameterCount(), pc.steps(), pc.batchSize(), pc.seqLen(), model.device());
            Pretrainer.Result r = new Pretrainer(model, tok, corpus, pc).run(p -> {
                if (json) {
                    System.out.println(Json.line(p));
                }
                System.err.printf(Locale.ROOT, "step %d/%d  loss %.4f  lr %.2e  |g| %.2f  %,.0f tok/s  ETA %s%s%n",
                        p.step(), p.steps(), p.loss(), p.lr(), p.gradNorm(), p.tokensPerSec(), eta(p.etaSeconds()),
                        Double.isNaN(p.heldOutLoss()) ? "" : String.format(Locale.ROOT, "  held-out loss %.4f", p.heldOutLoss()));
            });
            Map<String, String> meta = new LinkedHashMap<>();
            meta.put("written_by", "morastream pretrain");
            meta.put("steps", String.valueOf(r.steps()));
            meta.put("seed", String.valueOf(seed));
            model.save(out, dtype, 2L << 30, meta);
            writeEvalFiles(corpus, out);
            Map<String, Object> res = new LinkedHashMap<>();
            res.put("out", out.toString());
            res.put("parameters", model.parameterCount());
            res.put("steps", r.steps());
            res.put("tokens", r.tokens());
            res.put("final_loss", r.finalLoss());
            res.put("held_out_loss", r.heldOutLoss());
            res.put("seconds", r.seconds());
            System.err.printf(Locale.ROOT, "wrote %s (%s) in %.0f s%n", out, dtype, r.seconds());
            if (json) {
                System.out.println(Json.line(res));
            }
        }
        return 0;
    }

    /** The held-out general set and the downstream tasks that later evaluations use. */
    static void writeEvalFiles(SyntheticCorpus corpus, Path modelDir) throws Exception {
        Path eval = modelDir.resolve("eval");
        Files.createDirectories(eval);
        Files.writeString(eval.resolve("heldout.txt"), corpus.heldOut(400), StandardCharsets.UTF_8);
        try (BufferedWriter w = Files.newBufferedWriter(eval.resolve("tasks.jsonl"), StandardCharsets.UTF_8)) {
            for (SyntheticCorpus.Task t : corpus.tasks(200)) {
                Map<String, String> m = new LinkedHashMap<>();
                m.put("set", t.set());
                m.put("prompt", t.prompt());
                m.put("answer", t.answer());
                w.write(Json.line(m));
                w.newLine();
            }
        }
    }

    static String eta(double s) {
        long x = Math.round(s);
        return String.format(Locale.ROOT, "%d:%02d:%02d", x / 3600, (x / 60) % 60, x % 60);
    }
}
