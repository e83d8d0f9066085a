package dev.morastream.models.train;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.morastream.models.adapters.AdapterFiles;
import dev.morastream.models.adapters.AdapterLayer;
import dev.morastream.models.adapters.AdapterSet;
import dev.morastream.models.adapters.AdapterSpec;
import dev.morastream.models.checkpoint.AtomicFiles;
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
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

/**
 * Checkpoints that resume a trainer exactly: adapter (PEFT layout), optimizer moments, step,
 * schedule position, ReMoRA restarts, base weights changed by ReMoRA merges, and an opaque
 * metadata map (the stream stores Kafka offsets there).
 *
 * <p>Layout: {@code root/step-00000042/{trainer_state.json, adapter/, optimizer.safetensors,
 * base_delta.safetensors}} and {@code root/LATEST} naming the newest. Each checkpoint is written
 * into a temporary directory, every file fsynced, then renamed into place; {@code LATEST} is
 * replaced the same way, so a crash leaves either the old or the new checkpoint, never half.
 */
public final class TrainerCheckpoint {
    public static final int FORMAT_VERSION = 1;
    public static final String STATE = "trainer_state.json";
    public static final String LATEST = "LATEST";
    private static final ObjectMapper JSON = new ObjectMapper();

    private TrainerCheckpoint() {}

    /** What a checkpoint holds besides tensors. */
    public record Info(Path dir, long step, long microStep, Map<String, String> metadata) {}

    /**
     * Writes a checkpoint of {@code trainer} under {@code root} and points {@code LATEST} at it.
     *
     * @param keep how many checkpoints to retain (older ones are deleted), at least 1
     */
    public static Path save(IncrementalTrainer trainer, Path root, Map<String, String> metadata, int keep) throws IOException {
        if (trainer.microStep() % trainer.config().gradAccum() != 0) {
            throw new IllegalStateException("checkpoint in the middle of a gradient accumulation (micro step "
                    + trainer.microStep() + ", accumulation " + trainer.config().gradAccum() + ")");
        }
        Files.createDirectories(root);
        String name = String.format("step-%08d", trainer.step());
        Path fin = root.resolve(name);
        Path tmp = root.resolve(name + ".tmp-" + System.nanoTime());
        Files.createDirectories(tmp);
        AdapterSet set = trainer.adapters();
        AdapterFiles.save(set, tmp.resolve("adapter"), "");
        // optimizer moments
        AdamW.State st = trainer.optimizer().state();
        List<Tensor> opt = new ArrayList<>();
        st.m().forEach((k, v) -> opt.add(new Tensor("m." + k, st.shapes().get(k), v)));
        st.v().forEach((k, v) -> opt.add(new Tensor("v." + k, st.shapes().get(k), v)));
        Safetensors.write(tmp.resolve("optimizer.safetensors"), opt, DType.F32, Map.of("written_by", "morastream"));
        // base weights changed by ReMoRA merges (or trained by FULL): the current values
        if (trainer.restarts() > 0 && set.spec().method() != AdapterSpec.Method.FULL) {
            List<Tensor> base = new ArrayList<>();
            for (AdapterLayer l : set.layers().values()) {
                NDArray w = trainer.model().weight(l.module() + ".weight");
                base.add(new Tensor(l.module() + ".weight", w.getShape().getShape(), w.toFloatArray()));
            }
            Safetensors.write(tmp.resolve("base_delta.safetensors"), base, DType.F32, Map.of("written_by", "morastream"));
        }
        ObjectNode s = JSON.createObjectNode();
        s.put("format_version", FORMAT_VERSION);
        s.put("written_by", "morastream");
        s.put("step", trainer.step());
        s.put("micro_step", trainer.microStep());
        s.put("schedule_start", trainer.scheduleStart());
        s.put("restarts", trainer.restarts());
        s.put("optimizer_step", st.step());
        s.put("method", trainer.spec().method().id());
        s.put("label", trainer.spec().label());
        s.put("created_at", java.time.Instant.now().toString());
        ObjectNode md = s.putObject("metadata");
        metadata.forEach(md::put);
        JSON.writerWithDefaultPrettyPrinter().writeValue(tmp.resolve(STATE).toFile(), s);
        AtomicFiles.fsyncTree(tmp);
        AtomicFiles.deleteTree(fin);
        AtomicFiles.move(tmp, fin);
        AtomicFiles.fsync(root);
        AtomicFiles.write(root.resolve(LATEST), (name + "\n").getBytes(java.nio.charset.StandardCharsets.UTF_8));
        prune(root, Math.max(1, keep));
        return fin;
    }

    /**
     * The newest usable checkpoint under {@code root}, if any: {@link #recover} without the report.
     */
    public static java.util.Optional<Path> latest(Path root) throws IOException {
        return recover(root).chosen();
    }

    /** A checkpoint that could not be used, and why; it was moved to {@code root/quarantine/}. */
    public record Skipped(Path dir, String reason) {}

    /**
     * What {@link #recover} found.
     *
     * @param chosen the checkpoint to resume from (empty: start fresh)
     * @param skipped damaged checkpoints, newest first, each moved to {@link #QUARANTINE}
     * @param damaged whether anything under the root was unusable (a fresh start after damage must be loud)
     */
    public record Recovery(java.util.Optional<Path> chosen, List<Skipped> skipped, boolean damaged) {
        public Recovery {
            skipped = List.copyOf(skipped);
        }
    }

    /** Where damaged checkpoints are moved, under the checkpoint root. */
    public static final String QUARANTINE = "quarantine";

    private static final java.util.regex.Pattern STEP_DIR = java.util.regex.Pattern.compile("step-[0-9]+");
    private static final org.slf4j.Logger log = org.slf4j.LoggerFactory.getLogger(TrainerCheckpoint.class);

    /**
     * Finds the newest checkpoint that {@link #validate validates}: the one {@code LATEST} names when
     * it is sound, else the newest sound {@code step-*} folder (kept checkpoints are tried newest
     * first). Each damaged one met on the way is moved to {@code root/quarantine/} (so that every
     * caller, the trainer and the stream that seeks to its offsets, agrees on the same one) and
     * logged; {@code LATEST} is rewritten to name the one chosen.
     */
    public static synchronized Recovery recover(Path root) throws IOException {
        if (!Files.isDirectory(root)) {
            return new Recovery(java.util.Optional.empty(), List.of(), false);
        }
        List<Skipped> skipped = new ArrayList<>();
        boolean damaged = false;
        Path l = root.resolve(LATEST);
        Path named = null;
        if (Files.exists(l)) {
            String name;
            try {
                name = Files.readString(l, java.nio.charset.StandardCharsets.UTF_8).strip();
            } catch (IOException e) {
                name = "";
            }
            if (STEP_DIR.matcher(name).matches()) {
                named = root.resolve(name);
            } else {
                damaged = true;
                log.error("checkpoints {}: {} is corrupt ('{}'); looking for the newest sound checkpoint", root, LATEST,
                        name.length() > 40 ? name.substring(0, 40) + "..." : name);
            }
        }
        List<Path> candidates = new ArrayList<>();
        if (named != null) {
            candidates.add(named);
        }
        try (Stream<Path> st = Files.list(root)) {
            st.filter(p -> STEP_DIR.matcher(p.getFileName().toString()).matches() && Files.isDirectory(p))
                    .sorted(Comparator.comparing((Path p) -> p.getFileName().toString()).reversed())
                    .filter(p -> !candidates.contains(p))
                    .forEach(candidates::add);
        }
        for (Path c : candidates) {
            if (!Files.isDirectory(c)) {
                damaged = true;
                log.error("checkpoints {}: {} names {}, which does not exist", root, LATEST, c.getFileName());
                continue;
            }
            String why = validate(c);
            if (why == null) {
                if (damaged || !skipped.isEmpty() || !c.equals(named)) {
                    try {
                        AtomicFiles.write(l, (c.getFileName() + "\n").getBytes(java.nio.charset.StandardCharsets.UTF_8));
                    } catch (IOException e) {
                        // best effort: the checkpoint found is sound; LATEST is written again by the next save,
                        // whose failure (if the directory stays unwritable) the trainer reports as a step failure
                        log.warn("checkpoints {}: cannot point {} at {} ({}); resuming from it anyway", root, LATEST,
                                c.getFileName(), e.toString());
                    }
                }
                if (!skipped.isEmpty() || damaged) {
                    log.warn("checkpoints {}: resuming from {}, an older checkpoint than the damaged latest", root, c.getFileName());
                }
                return new Recovery(java.util.Optional.of(c), skipped, damaged || !skipped.isEmpty());
            }
            skipped.add(new Skipped(c, why));
            quarantine(root, c, why);
        }
        return new Recovery(java.util.Optional.empty(), skipped, damaged || !skipped.isEmpty());
    }

    /** Moves a checkpoint that cannot be used to {@code root/quarantine/}, logged as an error. */
    public static synchronized void quarantine(Path root, Path dir, String why) throws IOException {
        Path q = Files.createDirectories(root.resolve(QUARANTINE));
        Path to = q.resolve(dir.getFileName().toString());
        for (int i = 1; Files.exists(to); i++) {
            to = q.resolve(dir.getFileName() + "-" + i);
        }
        try {
            AtomicFiles.move(dir, to);
        } catch (java.nio.file.NoSuchFileException gone) {
            return; // moved by another caller meanwhile
        }
        AtomicFiles.fsync(root);
        log.error("checkpoints {}: {} is damaged ({}): moved to {}", root, dir.getFileName(), why, to);
    }

    /**
     * Why the checkpoint in {@code dir} cannot be resumed, or {@code null} when every file of it is
     * readable: the state (format, counters), the adapter's config and tensors, the optimizer's
     * tensors and, when present, the base delta.
     */
    public static String validate(Path dir) {
        try {
            JsonNode s = readState(dir);
            for (String k : List.of("step", "micro_step", "optimizer_step")) {
                if (!s.path(k).canConvertToLong()) {
                    return STATE + ": no integer '" + k + "'";
                }
            }
            if (!s.path("metadata").isObject()) {
                return STATE + ": no metadata object";
            }
            AdapterFiles.readSpec(dir.resolve("adapter"));
            try (Safetensors.Reader r = Safetensors.open(dir.resolve("adapter").resolve(AdapterFiles.WEIGHTS))) {
                r.entries();
            }
            try (Safetensors.Reader r = Safetensors.open(dir.resolve("optimizer.safetensors"))) {
                r.entries();
            }
            Path base = dir.resolve("base_delta.safetensors");
            if (Files.exists(base)) {
                try (Safetensors.Reader r = Safetensors.open(base)) {
                    r.entries();
                }
            }
            return null;
        } catch (IOException | RuntimeException e) {
            return e.getMessage() == null ? e.toString() : e.getMessage();
        }
    }

    /** A sound checkpoint that this trainer's configuration cannot resume (another method or rank): not damage. */
    public static final class Incompatible extends RuntimeException {
        private static final long serialVersionUID = 1L;

        public Incompatible(String message) {
            super(message);
        }
    }

    /** Reads a checkpoint's state without loading tensors. */
    public static Info info(Path dir) throws IOException {
        JsonNode s = readState(dir);
        Map<String, String> md = new LinkedHashMap<>();
        s.path("metadata").fields().forEachRemaining(e -> md.put(e.getKey(), e.getValue().asText()));
        return new Info(dir, s.path("step").asLong(), s.path("micro_step").asLong(), md);
    }

    private static JsonNode readState(Path dir) throws IOException {
        Path f = dir.resolve(STATE);
        JsonNode s = JSON.readTree(Files.readAllBytes(f));
        if (s == null || !s.isObject()) {
            throw new CheckpointException(f, STATE, "not a JSON object");
        }
        int v = s.path("format_version").asInt(-1);
        if (v != FORMAT_VERSION) {
            throw new CheckpointException(f, "format_version", "unsupported checkpoint format " + v + " (this build reads " + FORMAT_VERSION + ")");
        }
        return s;
    }

    /**
     * Rebuilds a trainer from a checkpoint on {@code model} (the same base it was trained on):
     * the next {@link IncrementalTrainer#step} continues exactly where the saved run stopped.
     */
    public static IncrementalTrainer resume(LlamaModel model, AdapterSpec spec, TrainerConfig cfg, Path dir) throws IOException {
        JsonNode s = readState(dir);
        Path base = dir.resolve("base_delta.safetensors");
        if (Files.isRegularFile(base)) {
            for (Tensor t : Safetensors.readAll(base)) {
                dev.morastream.models.llama.Tensors.assign(model.weight(t.name()), t.data());
            }
        }
        IncrementalTrainer tr = new IncrementalTrainer(model, spec, cfg);
        int restarts = s.path("restarts").asInt();
        tr.restoreCounters(s.path("step").asLong(), s.path("micro_step").asLong(), s.path("schedule_start").asLong(), restarts);
        AdapterSet loaded = AdapterFiles.load(dir.resolve("adapter"), model, tr.writesBase());
        AdapterSpec want = tr.specForRestart(restarts);
        if (!loaded.spec().label().equals(want.label())) {
            loaded.close();
            tr.close();
            throw new Incompatible(dir.resolve("adapter") + ": checkpoint adapter is " + loaded.spec().label()
                    + " but the trainer expects " + want.label());
        }
        tr.replaceAdapters(loaded);
        Map<String, float[]> m = new LinkedHashMap<>();
        Map<String, float[]> v = new LinkedHashMap<>();
        Map<String, long[]> shapes = new LinkedHashMap<>();
        for (Tensor t : Safetensors.readAll(dir.resolve("optimizer.safetensors"))) {
            String key = t.name().substring(2);
            (t.name().startsWith("m.") ? m : v).put(key, t.data());
            shapes.put(key, t.shape());
        }
        tr.optimizer().restore(new AdamW.State(s.path("optimizer_step").asLong(), m, v, shapes));
        return tr;
    }

    private static void prune(Path root, int keep) throws IOException {
        List<Path> all;
        try (Stream<Path> s = Files.list(root)) {
            all = s.filter(p -> STEP_DIR.matcher(p.getFileName().toString()).matches()).sorted(Comparator.comparing(Path::toString)).toList();
        }
        for (int i = 0; i < all.size() - keep; i++) {
            AtomicFiles.deleteTree(all.get(i));
        }
        List<Path> leftovers; // temporary folders of saves that crashed
        try (Stream<Path> s = Files.list(root)) {
            leftovers = s.filter(p -> p.getFileName().toString().matches("step-[0-9]+\\.tmp-[0-9]+")).toList();
        }
        for (Path p : leftovers) {
            AtomicFiles.deleteTree(p);
        }
    }

}
