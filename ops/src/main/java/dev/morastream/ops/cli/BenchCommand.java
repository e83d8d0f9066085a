package dev.morastream.ops.cli;

import ai.djl.ndarray.NDManager;
import dev.morastream.models.adapters.AdapterSpec;
import dev.morastream.models.adapters.MoraVariant;
import dev.morastream.models.bench.DecodeBench;
import dev.morastream.models.bench.MemorizeBench;
import dev.morastream.models.bench.StepBench;
import dev.morastream.models.llama.LlamaConfig;
import dev.morastream.models.llama.LlamaModel;
import dev.morastream.models.tokenizer.TextTokenizer;
import dev.morastream.models.train.LrSchedule;
import dev.morastream.models.train.TrainBatch;
import dev.morastream.models.train.TrainerConfig;
import dev.morastream.streams.bench.IngestBench;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/** Benchmarks that print JSON lines. */
@Command(name = "bench", mixinStandardHelpOptions = true, description = "Benchmarks (JSON lines with --json).",
        subcommands = {BenchCommand.Memorize.class, BenchCommand.Step.class, BenchCommand.Trainers.class, BenchCommand.Pretrain.class, BenchCommand.Continual.class,
            BenchCommand.Ingest.class, BenchCommand.Serve.class, BenchCommand.Decode.class,
            PlotCommand.class})
public final class BenchCommand implements Runnable {
    @CommandLine.Spec CommandLine.Model.CommandSpec spec;

    @Override
    public void run() {
        spec.commandLine().usage(System.err);
    }

    /** The paper's UUID memorisation task. */
    @Command(name = "memorize", mixinStandardHelpOptions = true,
            description = {"The MoRA paper's memorisation task (UUID pairs) on a base model.",
                "N random UUID pairs as key:value text, all trained every step; every --eval-every steps prints method, variant, rank, trainable_params,",
                "step, loss, char_acc and exact_match of the greedy completion of each key."})
    public static final class Memorize implements Callable<Integer> {
        @Mixin ModelOptions modelOptions;

        @Option(names = "--method", required = true, description = "mora, lora or full.")
        String method;

        @Option(names = "--variant", description = "MoRA variant: sharing, contiguous, type3, type4, rotation, decoupling, truncation (default: rotation below r=128, sharing above).")
        String variant;

        @Option(names = "--rank", defaultValue = "8", description = "r (default ${DEFAULT-VALUE}).")
        int rank;

        @Option(names = "--alpha", description = "LoRA alpha (default 2r).")
        Double alpha;

        @Option(names = "--pairs", defaultValue = "32", description = "UUID pairs (default ${DEFAULT-VALUE}).")
        int pairs;

        @Option(names = "--steps", defaultValue = "200", description = "Training steps (default ${DEFAULT-VALUE}).")
        int steps;

        @Option(names = "--lr", description = "Learning rate (default: 3e-3 for mora/lora, 3e-4 for full).")
        Double lr;

        @Option(names = "--seed", defaultValue = "0", description = "Seed of the UUID pairs (default ${DEFAULT-VALUE}).")
        long seed;

        @Option(names = "--eval-every", defaultValue = "25", description = "Steps between evaluations (default ${DEFAULT-VALUE}).")
        int evalEvery;

        @Option(names = "--save-adapter", paramLabel = "DIR", description = "Write the trained adapter there (PEFT layout).")
        java.nio.file.Path saveAdapter;

        @Option(names = "--json", description = "JSON lines on stdout.")
        boolean json;

        @Override
        public Integer call() {
            AdapterSpec.Method m = AdapterSpec.Method.parse(method);
            MoraVariant v = variant == null ? null : MoraVariant.parse(variant);
            AdapterSpec spec = new AdapterSpec(m, v, rank, alpha != null ? alpha : 2.0 * rank, 0.0, AdapterSpec.ALL_LINEAR,
                    AdapterSpec.DEFAULT_ROTATION_THRESHOLD, seed);
            double rate = lr != null ? lr : (m == AdapterSpec.Method.FULL ? 3e-4 : 3e-3);
            TrainerConfig cfg = new TrainerConfig(rate, LrSchedule.Kind.CONSTANT, Math.min(10, steps / 10), steps, 1, 0, 1.0, 1,
                    false, false, 0, 50);
            try (NDManager root = NDManager.newBaseManager();
                    LlamaModel model = LlamaModel.load(modelOptions.dir(), root);
                    TextTokenizer tok = TextTokenizer.forModel(modelOptions.dir(), model.config())) {
                MemorizeBench.run(model, tok, spec, cfg, pairs, steps, evalEvery, seed, p -> {
                    if (json) {
                        System.out.println(Json.line(p));
                    } else {
                        System.out.printf(Locale.ROOT, "%s %s r=%d params=%d step %d loss %.4f char_acc %.3f exact %.3f (%.0f s)%n",
                                p.method(), p.variant(), p.rank(), p.trainableParams(), p.step(), p.loss(), p.charAcc(),
                                p.exactMatch(), p.seconds());
                    }
                    System.out.flush();
                }, saveAdapter);
            }
            return 0;
        }
    }

    /** Step cost of every method on the same model and batch. */
    @Command(name = "step", mixinStandardHelpOptions = true,
            description = {"Time of one training step for LoRA, each MoRA variant and full fine-tuning, same model, batch and sequence length, after warm-up.",
                "Also the step's model FLOPs (from the config, docs/benchmarks.md) per second, a 2048x2048 fp32 matmul's GFLOP/s timed in the same process,",
                "and their ratio. Prints method, variant, trainable_params, ms_per_step, tokens_per_s, dtype, gflop_per_step, gflops_per_s,",
                "peak_gflops_per_s, fraction_of_peak, loss, loss_diff_to_f32."})
    public static final class Step implements Callable<Integer> {
        @CommandLine.Spec CommandLine.Model.CommandSpec commandSpec;

        @Mixin ModelOptions modelOptions;

        @Option(names = "--random", paramLabel = "H,L,F,Q,KV",
                description = "Instead of --model: a random Llama of hidden size H, L layers, MLP width F, Q query and KV key/value heads,"
                        + " byte vocabulary (e.g. 1024,8,2816,16,4 for the 90 M shape).")
        String random;

        @Option(names = "--rank", defaultValue = "8", description = "r (default ${DEFAULT-VALUE}).")
        int rank;

        @Option(names = "--batch-size", defaultValue = "8", description = "Sequences (default ${DEFAULT-VALUE}).")
        int batchSize;

        @Option(names = "--seq-len", defaultValue = "128", description = "Tokens per sequence (default ${DEFAULT-VALUE}).")
        int seqLen;

        @Option(names = "--warmup", defaultValue = "3", description = "Untimed steps (default ${DEFAULT-VALUE}).")
        int warmup;

        @Option(names = "--steps", defaultValue = "10", description = "Timed steps; the median is reported (default ${DEFAULT-VALUE}).")
        int steps;

        @Option(names = "--dtype", defaultValue = "F32",
                description = "F32 or BF16: type of the base model's matmuls (BF16 autocast-style: adapters, norms, attention and loss stay fp32;"
                        + " refused where the engine cannot multiply bf16 here). Default ${DEFAULT-VALUE}.")
        String dtype;

        @Option(names = "--methods", split = ",", description = "Only these labels, e.g. lora,rotation,full (default: lora, every MoRA variant, full).")
        List<String> methods;

        @Option(names = "--json", description = "JSON lines on stdout.")
        boolean json;

        @Override
        public Integer call() {
            CommandLine cl = commandSpec.commandLine(); // its err stream, not a fresh one's
            StepBench.Dtype dt;
            try {
                dt = StepBench.Dtype.parse(dtype);
            } catch (IllegalArgumentException e) {
                throw new CommandLine.ParameterException(cl, "--dtype: " + e.getMessage());
            }
            if (steps < 1) {
                throw new CommandLine.ParameterException(cl, "--steps must be at least 1");
            }
            try (NDManager root = NDManager.newBaseManager(); LlamaModel model = model(root, cl)) {
                try {
                    StepBench.requireSupported(dt, model);
                } catch (UnsupportedOperationException e) {
                    throw new CommandLine.ParameterException(cl, e.getMessage());
                }
                TrainBatch batch = StepBench.randomBatch(batchSize, Math.min(seqLen, model.config().maxPositionEmbeddings()),
                        model.config().vocabSize(), 1);
                List<AdapterSpec> specs = new ArrayList<>();
                specs.add(AdapterSpec.lora(rank, 2.0 * rank));
                for (MoraVariant v : MoraVariant.values()) {
                    specs.add(AdapterSpec.mora(rank, v));
                }
                specs.add(AdapterSpec.full());
                if (methods != null) {
                    specs.removeIf(s -> !methods.contains(s.method() == AdapterSpec.Method.MORA ? s.resolvedVariant().id() : s.method().id()));
                    if (specs.isEmpty()) {
                        throw new CommandLine.ParameterException(cl, "--methods " + methods + " names none of lora, "
                                + java.util.Arrays.stream(MoraVariant.values()).map(MoraVariant::id).toList() + ", full");
                    }
                }
                double peak = StepBench.peakGflopsPerS(model, StepBench.PEAK_SIZE, 5);
                for (AdapterSpec s : specs) {
                    StepBench.Result r = StepBench.measure(model, s, batch, warmup, steps, dt, peak);
                    if (json) {
                        System.out.println(Json.line(new Row(r.method(), r.variant(), r.trainableParams(), r.msPerStep(), r.tokensPerS(),
                                r.dtype(), r.gflopPerStep(), r.gflopsPerS(), r.peakGflopsPerS(), r.fractionOfPeak(), r.loss(),
                                r.lossDiffToF32())));
                    } else {
                        System.out.printf(Locale.ROOT,
                                "%-5s %-11s %,10d params  %8.1f ms/step  %,8.0f tokens/s  %s  %7.1f GFLOP/s of %.0f peak (%.2f)  loss %.4f (%+.1e vs F32)%n",
                                r.method(), r.variant(), r.trainableParams(), r.msPerStep(), r.tokensPerS(), r.dtype(), r.gflopsPerS(),
                                r.peakGflopsPerS(), r.fractionOfPeak(), r.loss(), r.lossDiffToF32());
                    }
                    System.out.flush();
                }
            }
            return 0;
        }

        private LlamaModel model(NDManager root, CommandLine cl) {
            if (random == null) {
                return LlamaModel.load(modelOptions.dir(), root);
            }
            if (modelOptions.model != null) {
                throw new CommandLine.ParameterException(cl, "--random and --model exclude each other");
            }
            String[] f = random.split(",");
            if (f.length != 5) {
                throw new CommandLine.ParameterException(cl, "--random wants H,L,F,Q,KV, got '" + random + "'");
            }
            int[] v = new int[5];
            LlamaConfig c;
            try {
                for (int i = 0; i < 5; i++) {
                    v[i] = Integer.parseInt(f[i].trim());
                }
                LlamaConfig t = LlamaConfig.tiny();
                c = new LlamaConfig(v[0], v[2], v[1], v[3], v[4], v[0] / v[3], t.vocabSize(), Math.max(t.maxPositionEmbeddings(), seqLen),
                        t.rmsNormEps(), t.ropeTheta(), null, true, false, false, t.bosTokenId(), t.eosTokenIds());
            } catch (IllegalArgumentException e) {
                throw new CommandLine.ParameterException(cl, "--random " + random + ": " + e.getMessage());
            }
            return LlamaModel.random(c, 1, root);
        }
    }

    /** Several trainers on one device, together against one at a time. */
    @Command(name = "trainers", mixinStandardHelpOptions = true,
            description = {"N trainers (MoRA, one adapter each) on the shared base model: trained tokens/s of all of them stepping",
                "one after another (alone) and each on its own thread at once (together); trainer i on GPU i mod n when there are GPUs.",
                "Prints domains, tokens_per_s_alone, tokens_per_s_together, speedup, devices."})
    public static final class Trainers implements Callable<Integer> {
        @Mixin ModelOptions modelOptions;

        @Option(names = "--domains", defaultValue = "2", description = "Trainers (default ${DEFAULT-VALUE}).")
        int domains;

        @Option(names = "--rank", defaultValue = "8", description = "r (default ${DEFAULT-VALUE}).")
        int rank;

        @Option(names = "--batch-size", defaultValue = "8", description = "Sequences per step (default ${DEFAULT-VALUE}).")
        int batchSize;

        @Option(names = "--seq-len", defaultValue = "64", description = "Tokens per sequence (default ${DEFAULT-VALUE}).")
        int seqLen;

        @Option(names = "--warmup", defaultValue = "2", description = "Untimed steps per trainer (default ${DEFAULT-VALUE}).")
        int warmup;

        @Option(names = "--steps", defaultValue = "10", description = "Timed steps per trainer and phase (default ${DEFAULT-VALUE}).")
        int steps;

        @Option(names = "--json", description = "JSON on stdout.")
        boolean json;

        @Override
        public Integer call() throws Exception {
            if (domains < 1 || steps < 1) {
                throw new CommandLine.ParameterException(new CommandLine(this), "--domains and --steps must be at least 1");
            }
            dev.morastream.models.bench.TrainersBench.Result r =
                    dev.morastream.models.bench.TrainersBench.run(modelOptions.dir(), domains, rank, batchSize, seqLen, warmup, steps);
            if (json) {
                System.out.println(Json.line(new TrainersRow(r.domains(), r.tokensPerSAlone(), r.tokensPerSTogether(), r.speedup(),
                        r.devices())));
            } else {
                System.out.printf(Locale.ROOT, "%d trainers: %,.0f tokens/s one at a time, %,.0f tokens/s together (x%.2f) on %s%n",
                        r.domains(), r.tokensPerSAlone(), r.tokensPerSTogether(), r.speedup(), r.devices());
            }
            return 0;
        }
    }

    /** The learn/forget curve: new facts against what the base knew. */
    @Command(name = "continual", mixinStandardHelpOptions = true,
            description = {"Trains N facts the base never saw (the demo's kind) with the streaming trainer's replay, pseudo-rehearsal and",
                "KL-to-base term; every --eval-every steps prints new_char_acc, new_exact, downstream {set: char_acc}, worst_drop",
                "(largest downstream drop against the base), retention_loss and kl_to_base, scored by the evaluator's own code."})
    public static final class Continual implements Callable<Integer> {
        @Mixin ModelOptions modelOptions;

        @Option(names = "--method", defaultValue = "mora", description = "mora, lora or full (default ${DEFAULT-VALUE}).")
        String method;

        @Option(names = "--variant", description = "MoRA variant (default: auto).")
        String variant;

        @Option(names = "--rank", defaultValue = "8", description = "r (default ${DEFAULT-VALUE}).")
        int rank;

        @Option(names = "--facts", defaultValue = "16", description = "New facts, half capitals, half jobs (default ${DEFAULT-VALUE}).")
        int facts;

        @Option(names = "--rehearsal", defaultValue = "0.5",
                description = "Share of each batch's rows replayed (pseudo-rehearsal + general corpus); 0 = none (default ${DEFAULT-VALUE}).")
        double rehearsal;

        @Option(names = "--rehearsal-share", defaultValue = "0.7", description = "Share of replayed rows that are the base's own answers (default ${DEFAULT-VALUE}).")
        double rehearsalShare;

        @Option(names = "--general-share", defaultValue = "0.3", description = "Share of replayed rows from the general corpus (default ${DEFAULT-VALUE}).")
        double generalShare;

        @Option(names = "--kl", defaultValue = "1.0", description = "Weight of the KL-to-base term on replayed rows; 0 = off (default ${DEFAULT-VALUE}).")
        double kl;

        @Option(names = "--kl-on-prompts", description = "Also count the new rows' prompt positions in the KL.")
        boolean klOnPrompts;

        @Option(names = "--lr", description = "Learning rate (default: 3e-3 for mora/lora, 3e-4 for full).")
        Double lr;

        @Option(names = "--steps", defaultValue = "150", description = "Optimizer steps (default ${DEFAULT-VALUE}).")
        int steps;

        @Option(names = "--eval-every", defaultValue = "25", description = "Steps between evaluations (default ${DEFAULT-VALUE}).")
        int evalEvery;

        @Option(names = "--batch-size", defaultValue = "8", description = "New rows per step (default ${DEFAULT-VALUE}).")
        int batchSize;

        @Option(names = "--seq-len", defaultValue = "64", description = "Tokens per row (default ${DEFAULT-VALUE}, the stream's).")
        int seqLen;

        @Option(names = "--seed", defaultValue = "0", description = "Seed of the facts, the order and the replay (default ${DEFAULT-VALUE}).")
        long seed;

        @Option(names = "--cache-dir", paramLabel = "DIR", description = "Pseudo-rehearsal cache (default: ~/.cache/morastream/rehearsal).")
        java.nio.file.Path cacheDir;

        @Option(names = "--json", description = "JSON lines on stdout.")
        boolean json;

        @Override
        public Integer call() throws Exception {
            AdapterSpec.Method m = AdapterSpec.Method.parse(method);
            if (facts < 2 || steps < 1 || evalEvery < 1 || !(rehearsal >= 0 && rehearsal < 1)) {
                throw new CommandLine.ParameterException(new CommandLine(this),
                        "--facts must be at least 2, --steps and --eval-every at least 1, --rehearsal in [0, 1)");
            }
            double rate = lr != null ? lr : (m == AdapterSpec.Method.FULL ? 3e-4 : 3e-3);
            java.nio.file.Path cache = cacheDir != null ? cacheDir
                    : java.nio.file.Path.of(System.getProperty("user.home"), ".cache", "morastream", "rehearsal");
            dev.morastream.ops.run.ContinualBench.run(new dev.morastream.ops.run.ContinualBench.Settings(m,
                    variant == null ? null : MoraVariant.parse(variant), rank, facts, rehearsal, rehearsalShare, generalShare, kl,
                    klOnPrompts, rate, steps, evalEvery, batchSize, seqLen, seed), modelOptions.dir(), cache, p -> {
                        if (json) {
                            System.out.println(Json.line(p));
                        } else {
                            System.out.printf(Locale.ROOT, "%-4s %-8s r=%d step %4d  new facts %.3f (exact %.3f)  worst drop %.3f  KL %.4f"
                                    + "  retention %.4f  %s (%.0f s, %.0f ms/step)%n", p.method(), p.variant(), p.rank(), p.step(), p.newCharAcc(),
                                    p.newExact(), p.worstDrop(), p.klToBase(), p.retentionLoss(), p.downstream(), p.seconds(), p.stepMs());
                        }
                        System.out.flush();
                    }, line -> System.err.println(line));
            return 0;
        }
    }

    /** The paper's pretraining comparison at small scale. */
    @Command(name = "pretrain", mixinStandardHelpOptions = true,
            description = {"From a random initialisation: LoRA, MoRA, ReLoRA, ReMoRA or full training on the synthetic corpus, fresh",
                "documents every batch (no repetition); every --eval-every steps prints method, variant, rank, trainable_params, step,",
                "train_loss (mean since the last evaluation), heldout_loss and heldout_ppl on held-out documents of another seed."})
    public static final class Pretrain implements Callable<Integer> {
        @Option(names = "--method", required = true, description = "lora, mora, relora, remora or full.")
        String method;

        @Option(names = "--variant", description = "MoRA variant (default: sharing for remora, auto for mora).")
        String variant;

        @Option(names = "--rank", defaultValue = "8", description = "r (default ${DEFAULT-VALUE}).")
        int rank;

        @Option(names = "--steps", defaultValue = "400", description = "Optimizer steps (default ${DEFAULT-VALUE}).")
        int steps;

        @Option(names = "--restart-every", defaultValue = "100", description = "ReLoRA/ReMoRA: steps between merges (default ${DEFAULT-VALUE}).")
        int restartEvery;

        @Option(names = "--lr", description = "Peak learning rate (default: 3e-3 for low-rank methods, 1e-3 for full).")
        Double lr;

        @Option(names = "--batch-size", defaultValue = "8", description = "Sequences per step (default ${DEFAULT-VALUE}).")
        int batchSize;

        @Option(names = "--seq-len", defaultValue = "128", description = "Tokens per sequence (default ${DEFAULT-VALUE}).")
        int seqLen;

        @Option(names = "--eval-every", defaultValue = "50", description = "Steps between evaluations (default ${DEFAULT-VALUE}).")
        int evalEvery;

        @Option(names = "--heldout-rows", defaultValue = "32", description = "Held-out windows scored (default ${DEFAULT-VALUE}).")
        int heldoutRows;

        @Option(names = "--config", defaultValue = "tiny", description = "Model shape: tiny (the shipped base's) or small (default ${DEFAULT-VALUE}).")
        String config;

        @Option(names = "--seed", defaultValue = "0", description = "Seed of the initialisation and the corpus (default ${DEFAULT-VALUE}).")
        long seed;

        @Option(names = "--json", description = "JSON lines on stdout.")
        boolean json;

        @Override
        public Integer call() {
            dev.morastream.models.train.PretrainBench.Method m = dev.morastream.models.train.PretrainBench.Method.parse(method);
            if (steps < 1 || evalEvery < 1 || restartEvery < 1) {
                throw new CommandLine.ParameterException(new CommandLine(this), "--steps, --eval-every and --restart-every must be at least 1");
            }
            dev.morastream.models.train.PretrainBench.run(new dev.morastream.models.train.PretrainBench.Settings(m,
                    variant == null ? null : MoraVariant.parse(variant), rank, steps, restartEvery,
                    lr != null ? lr : dev.morastream.models.train.PretrainBench.defaultLr(m), batchSize, seqLen, evalEvery, heldoutRows,
                    seed, config), p -> {
                        if (json) {
                            System.out.println(Json.line(p));
                        } else {
                            System.out.printf(Locale.ROOT, "%-6s %-9s r=%d %,9d params  step %5d  train %.4f  held-out %.4f (ppl %.2f)%n",
                                    p.method(), p.variant(), p.rank(), p.trainableParams(), p.step(), p.trainLoss(), p.heldoutLoss(),
                                    p.heldoutPpl());
                        }
                        System.out.flush();
                    });
            return 0;
        }
    }

    record TrainersRow(int domains, double tokens_per_s_alone, double tokens_per_s_together, double speedup, List<String> devices) {}

    /** Kafka ingestion: Kafka's own consumer tool against our stream up to packed batches. */
    @Command(name = "ingest", mixinStandardHelpOptions = true,
            description = {"Kafka ingestion speed: Kafka's ConsumerPerformance against the training stream up to packed batches.",
                "Starts an embedded broker in a temporary directory, fills a topic with N JSON records {\"text\": ...} of about B bytes,",
                "then reads it with Kafka's tool (child JVM) and with decode + tokenize + pack into a counting sink;",
                "prints records, record_bytes, kafka_records_per_s, ours_records_per_s and ratio (ours / kafka)."})
    public static final class Ingest implements Callable<Integer> {
        @Option(names = "--records", defaultValue = "100000", description = "Records produced and read (default ${DEFAULT-VALUE}).")
        int records;

        @Option(names = "--record-bytes", defaultValue = "1024", description = "Approximate bytes per record value (default ${DEFAULT-VALUE}).")
        int recordBytes;

        @Option(names = "--partitions", defaultValue = "3", description = "Partitions of the topic (default ${DEFAULT-VALUE}).")
        int partitions;

        @Option(names = "--json", description = "One JSON object on stdout.")
        boolean json;

        @Override
        public Integer call() throws java.io.IOException {
            java.nio.file.Path dir = java.nio.file.Files.createTempDirectory("mora-ingest-");
            try {
                IngestBench.Result r = IngestBench.run(dir, IngestBench.Options.of(records, recordBytes, partitions));
                if (json) {
                    System.out.println(Json.line(r));
                } else {
                    System.out.printf(Locale.ROOT, "%,d records of ~%d bytes: kafka %,.0f records/s, ours %,.0f records/s, ratio %.2f%n",
                            r.records(), r.recordBytes(), r.kafkaRecordsPerS(), r.oursRecordsPerS(), r.ratio());
                }
                System.out.flush();
            } finally {
                try (var paths = java.nio.file.Files.walk(dir)) {
                    paths.sorted(java.util.Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
                }
            }
            return 0;
        }
    }

    /** Serving throughput through the real HTTP server with concurrent streaming clients. */
    @Command(name = "serve", mixinStandardHelpOptions = true,
            description = {"Serving throughput: the HTTP server in process, concurrent streaming clients (SSE), continuous batching.",
                "K random MoRA adapter versions of one domain in a temporary registry; each client asks them in turn by exact name.",
                "Prints one line per concurrency level (1 and C): concurrency, adapters, requests_per_s, output_tokens_per_s,",
                "ttft_p50_ms, ttft_p99_ms, itl_p50_ms, and swap_ms (promotion of a new version to its first token, under that load)."})
    public static final class Serve implements Callable<Integer> {
        @Mixin ModelOptions modelOptions;

        @Option(names = "--concurrency", defaultValue = "16", description = "Concurrent clients of the second level (default ${DEFAULT-VALUE}).")
        int concurrency;

        @Option(names = "--adapters", defaultValue = "4", description = "Adapter versions the requests spread over (default ${DEFAULT-VALUE}).")
        int adapters;

        @Option(names = "--max-tokens", defaultValue = "64", description = "max_tokens of each request (default ${DEFAULT-VALUE}).")
        int maxTokens;

        @Option(names = "--requests", defaultValue = "8", description = "Requests per client per level (default ${DEFAULT-VALUE}).")
        int requests;

        @Option(names = "--json", description = "JSON lines on stdout.")
        boolean json;

        @Override
        public Integer call() throws Exception {
            List<dev.morastream.ops.serve.ServeBench.Result> rs = dev.morastream.ops.serve.ServeBench.run(
                    new dev.morastream.ops.serve.ServeBench.Options(modelOptions.dir(), concurrency, adapters, maxTokens, requests));
            for (dev.morastream.ops.serve.ServeBench.Result r : rs) {
                if (json) {
                    System.out.println(Json.line(r));
                } else {
                    System.out.printf(Locale.ROOT, "concurrency %d, %d versions: %.1f requests/s, %.0f output tokens/s, ttft p50 %.1f ms"
                            + " p99 %.1f ms, itl p50 %.2f ms, swap %.1f ms%n", r.concurrency(), r.adapters(), r.requests_per_s(),
                            r.output_tokens_per_s(), r.ttft_p50_ms(), r.ttft_p99_ms(), r.itl_p50_ms(), r.swap_ms());
                }
            }
            System.out.flush();
            return 0;
        }
    }

    /** One continuous-batching decode step with the rows spread over K adapter versions, against one version and the base. */
    @Command(name = "decode", mixinStandardHelpOptions = true,
            description = {"Time of one batched decode step of N rows spread over K random adapter versions (row i on version i mod K),",
                "against the same rows on one version and on the base model; rounds alternate the three, the median is reported.",
                "Prints rows, adapters (0: the base), method, variant, rounds, steps, ms_per_step, to_one_version, to_base."})
    public static final class Decode implements Callable<Integer> {
        @CommandLine.Spec CommandLine.Model.CommandSpec commandSpec;

        @Mixin ModelOptions modelOptions;

        @Option(names = "--rows", defaultValue = "16", description = "Rows decoded together (default ${DEFAULT-VALUE}).")
        int rows;

        @Option(names = "--adapters", defaultValue = "4", description = "Versions the rows spread over, at least 2 (default ${DEFAULT-VALUE}).")
        int adapters;

        @Option(names = "--method", defaultValue = "sharing",
                description = "lora or a MoRA variant (default ${DEFAULT-VALUE}, what bench serve publishes).")
        String method;

        @Option(names = "--rank", defaultValue = "8", description = "r (default ${DEFAULT-VALUE}).")
        int rank;

        @Option(names = "--steps", defaultValue = "30", description = "Timed steps per batch and round (default ${DEFAULT-VALUE}).")
        int steps;

        @Option(names = "--rounds", defaultValue = "6", description = "Rounds (default ${DEFAULT-VALUE}).")
        int rounds;

        @Option(names = "--json", description = "JSON lines on stdout.")
        boolean json;

        @Override
        public Integer call() {
            CommandLine cl = commandSpec.commandLine();
            AdapterSpec spec;
            if (method.equals("lora")) {
                spec = AdapterSpec.lora(rank, 2.0 * rank);
            } else {
                try {
                    spec = AdapterSpec.mora(rank, MoraVariant.parse(method));
                } catch (IllegalArgumentException e) {
                    throw new CommandLine.ParameterException(cl, "--method must be lora or one of "
                            + java.util.Arrays.stream(MoraVariant.values()).map(MoraVariant::id).toList() + ", got '" + method + "'");
                }
            }
            try {
                DecodeBench.requireValid(rows, adapters, steps, rounds); // before the model loads
            } catch (IllegalArgumentException e) {
                throw new CommandLine.ParameterException(cl, e.getMessage());
            }
            try (NDManager root = NDManager.newBaseManager(); LlamaModel model = LlamaModel.load(modelOptions.dir(), root);
                    TextTokenizer tok = TextTokenizer.forModel(modelOptions.dir(), model.config())) {
                for (DecodeBench.Result r : DecodeBench.run(model, tok, spec, rows, adapters, steps, rounds)) {
                    if (json) {
                        System.out.println(Json.line(new DecodeRow(r.rows(), r.adapters(), r.method(), r.variant(), r.rounds(), r.steps(),
                                r.msPerStep(), r.toOneVersion(), r.toBase())));
                    } else {
                        System.out.printf(Locale.ROOT, "%d rows, %d versions (%s %s): %.2f ms/step, %.3f x one version, %.3f x base%n",
                                r.rows(), r.adapters(), r.method(), r.variant(), r.msPerStep(), r.toOneVersion(), r.toBase());
                    }
                }
            }
            System.out.flush();
            return 0;
        }
    }

    record DecodeRow(int rows, int adapters, String method, String variant, int rounds, int steps, double ms_per_step,
            double to_one_version, double to_base) {}

    /** JSON field names as the issue gives them. */
    record Row(String method, String variant, long trainable_params, double ms_per_step, double tokens_per_s,
            String dtype, double gflop_per_step, double gflops_per_s, double peak_gflops_per_s, double fraction_of_peak,
            double loss, double loss_diff_to_f32) {}
}
