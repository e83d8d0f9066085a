package dev.morastream.ops.cli;

import ai.djl.ndarray.NDManager;
import com.fasterxml.jackson.databind.JsonNode;
import dev.morastream.models.adapters.AdapterSpec;
import dev.morastream.models.adapters.MoraVariant;
import dev.morastream.models.llama.LlamaModel;
import dev.morastream.models.tokenizer.TextTokenizer;
import dev.morastream.models.train.DocumentPacker;
import dev.morastream.models.train.IncrementalTrainer;
import dev.morastream.models.train.LrSchedule;
import dev.morastream.models.train.StepResult;
import dev.morastream.models.train.TrainerCheckpoint;
import dev.morastream.models.train.TrainerExport;
import dev.morastream.models.train.TrainerConfig;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/** Fine-tunes an adapter on files, checkpointing as it goes; a rerun resumes exactly. */
@Command(name = "train", mixinStandardHelpOptions = true,
        description = {"Fine-tune a MoRA, LoRA or full adapter of a base model on text or JSONL files.",
            "Checkpoints go to OUT/checkpoints every --checkpoint-every steps; running the same command again",
            "resumes from the newest one exactly (same data order, optimizer state and schedule).",
            "The final adapter is written to OUT/adapter (PEFT layout)."})
public final class TrainCommand implements Callable<Integer> {
    @Mixin ModelOptions modelOptions;

    @Option(names = "--data", required = true, paramLabel = "FILE",
            description = "Training file(s): .jsonl lines {\"text\"} or {\"prompt\",\"completion\"}; any other file is text, documents separated by blank lines.")
    List<Path> data;

    @Option(names = "--out", required = true, paramLabel = "DIR", description = "Run directory (checkpoints, final adapter).")
    Path out;

    @Option(names = "--method", defaultValue = "mora", description = "mora, lora or full (default ${DEFAULT-VALUE}).")
    String method;

    @Option(names = "--variant", description = "MoRA variant (default: rotation below r=--rotation-threshold, sharing above).")
    String variant;

    @Option(names = "--rank", defaultValue = "8", description = "r (default ${DEFAULT-VALUE}).")
    int rank;

    @Option(names = "--alpha", description = "LoRA alpha (default 2r).")
    Double alpha;

    @Option(names = "--dropout", defaultValue = "0.05", description = "Adapter input dropout (default ${DEFAULT-VALUE}).")
    double dropout;

    @Option(names = "--targets", split = ",", description = "Target modules (default q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj).")
    List<String> targets;

    @Option(names = "--rotation-threshold", defaultValue = "128", description = "Smallest r for which sharing is the default MoRA variant (default ${DEFAULT-VALUE}).")
    int rotationThreshold;

    @Option(names = "--lr", defaultValue = "2e-3", description = "Peak learning rate (default ${DEFAULT-VALUE}).")
    double lr;

    @Option(names = "--schedule", defaultValue = "cosine", description = "cosine, linear or constant (default ${DEFAULT-VALUE}).")
    String schedule;

    @Option(names = "--warmup", defaultValue = "10", description = "Warmup steps (default ${DEFAULT-VALUE}).")
    int warmup;

    @Option(names = "--weight-decay", defaultValue = "0.0", description = "AdamW weight decay (default ${DEFAULT-VALUE}).")
    double weightDecay;

    @Option(names = "--clip", defaultValue = "1.0", description = "Gradient norm clip, 0 = off (default ${DEFAULT-VALUE}).")
    double clip;

    @Option(names = "--steps", defaultValue = "100", description = "Optimizer steps (default ${DEFAULT-VALUE}).")
    int steps;

    @Option(names = "--batch-size", defaultValue = "8", description = "Sequences per micro-batch (default ${DEFAULT-VALUE}).")
    int batchSize;

    @Option(names = "--seq-len", defaultValue = "128", description = "Tokens per sequence (default ${DEFAULT-VALUE}).")
    int seqLen;

    @Option(names = "--grad-accum", defaultValue = "1", description = "Micro-batches per step (default ${DEFAULT-VALUE}).")
    int gradAccum;

    @Option(names = "--completion-only", description = "Loss only on completion tokens of prompt/completion records.")
    boolean completionOnly;

    @Option(names = "--remora-every", defaultValue = "0", description = "ReMoRA/ReLoRA: merge and restart every N steps (default off).")
    int remoraEvery;

    @Option(names = "--checkpoint-every", defaultValue = "25", description = "Steps between checkpoints (default ${DEFAULT-VALUE}).")
    int checkpointEvery;

    @Option(names = "--keep", defaultValue = "3", description = "Checkpoints kept (default ${DEFAULT-VALUE}).")
    int keep;

    @Option(names = "--seed", defaultValue = "0", description = "Seed of initialisation and dropout (default ${DEFAULT-VALUE}).")
    long seed;

    @Option(names = "--json", description = "One JSON object per step on stdout.")
    boolean json;

    @Override
    public Integer call() throws Exception {
        AdapterSpec.Method m = AdapterSpec.Method.parse(method);
        AdapterSpec spec = new AdapterSpec(m, variant == null ? null : MoraVariant.parse(variant), rank,
                alpha != null ? alpha : 2.0 * rank, dropout, targets, rotationThreshold, seed);
        TrainerConfig cfg = new TrainerConfig(lr, LrSchedule.Kind.parse(schedule), warmup, steps, 0.1, weightDecay, clip,
                gradAccum, completionOnly, false, remoraEvery, 50);
        Path ckpts = out.resolve("checkpoints");
        try (NDManager root = NDManager.newBaseManager();
                LlamaModel model = LlamaModel.load(modelOptions.dir(), root);
                TextTokenizer tok = TextTokenizer.forModel(modelOptions.dir(), model.config())) {
            int len = Math.min(seqLen, model.config().maxPositionEmbeddings());
            DocumentPacker packer = new DocumentPacker(tok, len);
            for (Path f : data) {
                for (DocumentPacker.Document d : read(f)) {
                    packer.add(d);
                }
            }
            if (packer.windows() < 1) {
                throw new IllegalArgumentException("no documents in " + data + ": nothing to train on");
            }
            Optional<Path> latest = TrainerCheckpoint.latest(ckpts);
            IncrementalTrainer tr = latest.isPresent()
                    ? TrainerCheckpoint.resume(model, spec, cfg, latest.get())
                    : new IncrementalTrainer(model, spec, cfg);
            try (tr) {
                System.err.printf(Locale.ROOT, "%s: %,d trainable parameters, %d windows of %d tokens, %s%n", spec.label(),
                        tr.adapters().trainableParameters(), packer.windows(), len,
                        latest.map(p -> "resumed from " + p.getFileName() + " at step " + tr.step()).orElse("from scratch"));
                long t0 = System.nanoTime();
                long startStep = tr.step();
                while (tr.step() < steps) {
                    StepResult r = tr.step(packer.batch(tr.microStep() * batchSize, batchSize));
                    if (!r.updated()) {
                        continue;
                    }
                    double secs = (System.nanoTime() - t0) / 1e9;
                    double perStep = secs / Math.max(1, tr.step() - startStep);
                    if (json) {
                        Map<String, Object> o = new LinkedHashMap<>();
                        o.put("step", r.step());
                        o.put("loss", r.lossBefore());
                        o.put("lr", r.lr());
                        o.put("grad_norm", r.gradNorm());
                        o.put("skipped", r.skipped());
                        System.out.println(Json.line(o));
                    }
                    if (r.step() % 5 == 0 || r.step() == steps) {
                        System.err.printf(Locale.ROOT, "step %d/%d  loss %.4f  lr %.2e  |g| %.2f  %,.0f tok/s  ETA %s%n", r.step(),
                                steps, r.lossBefore(), r.lr(), r.gradNorm(), r.tokens() * gradAccum / perStep,
                                PretrainCommand.eta(perStep * (steps - r.step())));
                    }
                    if (r.step() % checkpointEvery == 0 || r.step() == steps) {
                        Path p = TrainerCheckpoint.save(tr, ckpts, Map.of("data_windows", String.valueOf(tr.microStep() * batchSize)), keep);
                        System.err.println("checkpoint " + p);
                    }
                }
                TrainerExport.Exported e = TrainerExport.export(tr, modelOptions.dir(), out);
                if (e.model().isPresent()) {
                    System.err.println("wrote the merged model " + e.model().get() + " (" + tr.restarts() + " ReMoRA/ReLoRA cycles merged)"
                            + " and the current cycle's adapter " + e.adapter() + ": use them together, e.g. bin/mora eval perplexity"
                            + " --model " + e.model().get() + " --adapter " + e.adapter());
                } else {
                    System.err.println("wrote adapter " + e.adapter());
                }
            }
        }
        return 0;
    }

    /** Documents of one file; a malformed JSONL line is an error naming the file and line. */
    static List<DocumentPacker.Document> read(Path f) throws IOException {
        if (!Files.isRegularFile(f)) {
            throw new IllegalArgumentException("no such file: " + f);
        }
        List<DocumentPacker.Document> out = new ArrayList<>();
        String content = Files.readString(f, StandardCharsets.UTF_8);
        if (!f.getFileName().toString().endsWith(".jsonl")) {
            for (String doc : content.split("\\n\\s*\\n")) {
                if (!doc.isBlank()) {
                    out.add(DocumentPacker.Document.text(doc.strip() + "\n"));
                }
            }
            return out;
        }
        String[] lines = content.split("\n");
        for (int i = 0; i < lines.length; i++) {
            if (lines[i].isBlank()) {
                continue;
            }
            JsonNode n;
            try {
                n = Json.MAPPER.readTree(lines[i]);
            } catch (com.fasterxml.jackson.core.JsonProcessingException e) {
                throw new IllegalArgumentException(f + ":" + (i + 1) + ": malformed JSON: " + e.getOriginalMessage());
            }
            if (n.path("text").isTextual()) {
                out.add(DocumentPacker.Document.text(n.get("text").asText()));
            } else if (n.path("prompt").isTextual() && n.path("completion").isTextual()) {
                out.add(new DocumentPacker.Document(n.get("prompt").asText(), n.get("completion").asText()));
            } else {
                throw new IllegalArgumentException(f + ":" + (i + 1)
                        + ": needs a string \"text\", or string \"prompt\" and \"completion\"");
            }
        }
        return out;
    }
}
