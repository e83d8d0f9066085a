package dev.morastream.models.train;

import dev.morastream.models.adapters.AdapterFiles;
import dev.morastream.models.adapters.AdapterSpec;
import dev.morastream.models.checkpoint.AtomicFiles;
import dev.morastream.models.checkpoint.DType;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.Map;
import java.util.Optional;
import java.util.stream.Stream;

/**
 * What a finished training run hands the user. A plain run: its adapter ({@code OUT/adapter}, PEFT
 * layout) for the base it was trained on. A ReMoRA/ReLoRA run, whose restarts merged earlier cycles
 * into the weights: the merged weights as a HuggingFace-layout model ({@code OUT/model}: config,
 * safetensors, the base's tokenizer files) plus the current cycle's adapter on top of it; the
 * adapter alone would lose everything merged before.
 */
public final class TrainerExport {
    /** Where the run's results went: the adapter, and the merged model when there were merges. */
    public record Exported(Path adapter, Optional<Path> model) {}

    private TrainerExport() {}

    /**
     * @param baseDir the base model's directory (its tokenizer files are copied next to merged weights)
     * @param out the run's output directory
     */
    public static Exported export(IncrementalTrainer tr, Path baseDir, Path out) throws IOException {
        if (!merged(tr)) {
            Path adapter = out.resolve("adapter");
            AdapterFiles.save(tr.adapters(), adapter, baseDir.toString());
            return new Exported(adapter, Optional.empty());
        }
        Path model = out.resolve("model");
        Path tmp = out.resolve("model.tmp-" + System.nanoTime());
        tr.model().save(tmp, DType.F32, Long.MAX_VALUE, Map.of("written_by", "morastream",
                "merged_restarts", Integer.toString(tr.restarts()), "base_model", baseDir.toString()));
        copyTokenizerFiles(baseDir, tmp);
        AtomicFiles.fsyncTree(tmp);
        AtomicFiles.deleteTree(model);
        AtomicFiles.move(tmp, model);
        Path adapter = out.resolve("adapter");
        AdapterFiles.save(tr.adapters(), adapter, model.toString());
        return new Exported(adapter, Optional.of(model));
    }

    /**
     * Refuses to hand out an adapter alone for a run whose restarts merged earlier cycles into the
     * base: that adapter applied to the original base is not what was trained.
     */
    public static void requireNoMerges(IncrementalTrainer tr) {
        if (merged(tr)) {
            throw new IllegalStateException("this run merged " + tr.restarts() + " ReMoRA/ReLoRA cycle(s) into the base weights:"
                    + " its adapter alone on the original base is not what was trained; export the merged model and the"
                    + " current adapter together (TrainerExport.export: OUT/model + OUT/adapter)");
        }
    }

    /** Whether earlier cycles were merged into the weights (ReMoRA/ReLoRA after a restart). */
    public static boolean merged(IncrementalTrainer tr) {
        return tr.restarts() > 0 && tr.spec().method() != AdapterSpec.Method.FULL;
    }

    /** Every file of the base directory except its config and weights (tokenizer, generation config, eval sets). */
    private static void copyTokenizerFiles(Path baseDir, Path to) throws IOException {
        try (Stream<Path> files = Files.list(baseDir)) {
            for (Path f : files.toList()) {
                String n = f.getFileName().toString();
                if (n.equals("config.json") || n.endsWith(".safetensors") || n.endsWith(".safetensors.index.json")) {
                    continue;
                }
                if (Files.isRegularFile(f)) {
                    Files.copy(f, to.resolve(n), StandardCopyOption.REPLACE_EXISTING);
                } else if (Files.isDirectory(f)) {
                    copyTree(f, to.resolve(n));
                }
            }
        }
    }

    private static void copyTree(Path from, Path to) throws IOException {
        try (Stream<Path> all = Files.walk(from)) {
            for (Path p : all.toList()) {
                Path target = to.resolve(from.relativize(p).toString());
                if (Files.isDirectory(p)) {
                    Files.createDirectories(target);
                } else {
                    Files.copy(p, target, StandardCopyOption.REPLACE_EXISTING);
                }
            }
        }
    }
}
