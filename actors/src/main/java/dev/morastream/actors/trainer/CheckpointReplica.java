package dev.morastream.actors.trainer;

import dev.morastream.models.checkpoint.AtomicFiles;
import dev.morastream.models.train.TrainerCheckpoint;
import dev.morastream.streams.state.StateFiles;
import dev.morastream.streams.state.StateStore;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.regex.Pattern;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A domain's latest trainer checkpoint in the cluster's {@link StateStore}, so that it outlives the
 * node's disk: after each local checkpoint the trainer exports it — adapter, optimizer, state with
 * its Kafka offsets, and the ledger of the ids it absorbed — in one atomic commit under
 * {@code checkpoints/<domain>/} (replacing the previous one), with the domain's own writer identity;
 * a node that starts with no checkpoint of the domain on its disk, or an older one, restores the
 * exported one first, and the trainer and the stream resume from it as from a local one. Records
 * trained after the last export and lost with a node are trained again from those offsets: the
 * surviving lineage has each of them once.
 */
public final class CheckpointReplica {
    private static final Logger log = LoggerFactory.getLogger(CheckpointReplica.class);
    static final String PREFIX = "checkpoints/";
    private static final String LATEST = "LATEST";
    private static final Pattern STEP_DIR = Pattern.compile("step-[0-9]{8}");

    private final StateStore store;

    /** @param store the store, written with the domain's writer identity */
    public CheckpointReplica(StateStore store) {
        this.store = store;
    }

    static String prefix(String domain) {
        return PREFIX + domain + "/";
    }

    /**
     * Exports the checkpoint {@code dir} and the ledger (when there is one) as the domain's latest,
     * in one commit that also removes the previous export.
     */
    public void export(String domain, Path dir, Path ledger) throws IOException {
        String p = prefix(domain);
        Map<String, byte[]> puts = new LinkedHashMap<>(StateFiles.read(dir, p + dir.getFileName() + "/"));
        if (ledger != null && Files.isRegularFile(ledger)) {
            puts.put(p + TrainerActor.LEDGER_FILE, Files.readAllBytes(ledger));
        }
        puts.put(p + LATEST, dir.getFileName().toString().getBytes(StandardCharsets.UTF_8));
        Set<String> deletes = new HashSet<>(store.keys(p));
        deletes.removeAll(puts.keySet());
        store.commit(puts, deletes);
    }

    /** The step of the exported checkpoint of {@code domain}, if there is one. */
    public Optional<Long> exportedStep(String domain) {
        return latestName(domain).map(n -> Long.parseLong(n.substring("step-".length())));
    }

    private Optional<String> latestName(String domain) {
        return store.get(prefix(domain) + LATEST).map(b -> new String(b, StandardCharsets.UTF_8).strip())
                .filter(n -> STEP_DIR.matcher(n).matches());
    }

    /**
     * Restores the exported checkpoint of {@code domain} into {@code root} (the trainer's checkpoint
     * directory) when it is newer than the newest usable one there (or there is none), ledger
     * included; does nothing otherwise.
     *
     * @return the restored checkpoint's directory, or empty when the local one stays
     */
    public Optional<Path> restore(String domain, Path root) throws IOException {
        Optional<String> name = latestName(domain);
        if (name.isEmpty()) {
            return Optional.empty();
        }
        Optional<Path> local = TrainerCheckpoint.latest(root);
        if (local.isPresent() && local.get().getFileName().toString().compareTo(name.get()) >= 0) {
            return Optional.empty();
        }
        String p = prefix(domain) + name.get() + "/";
        List<String> keys = store.keys(p);
        Map<String, byte[]> files = store.getAll(keys);
        if (keys.isEmpty() || files.size() != keys.size()) {
            log.error("state store: the exported checkpoint {} of {} is incomplete or damaged ({} of {} files); not restored", name.get(),
                    domain, files.size(), keys.size());
            return Optional.empty();
        }
        Files.createDirectories(root);
        Path tmp = root.resolve(name.get() + ".tmp-" + System.nanoTime());
        StateFiles.write(files, p, tmp);
        String why = TrainerCheckpoint.validate(tmp);
        if (why != null) {
            AtomicFiles.deleteTree(tmp);
            log.error("state store: the exported checkpoint {} of {} is not usable ({}); not restored", name.get(), domain, why);
            return Optional.empty();
        }
        AtomicFiles.fsyncTree(tmp);
        Path fin = root.resolve(name.get());
        AtomicFiles.deleteTree(fin);
        AtomicFiles.move(tmp, fin);
        Optional<byte[]> ledger = store.get(prefix(domain) + TrainerActor.LEDGER_FILE);
        if (ledger.isPresent()) {
            AtomicFiles.write(root.resolve(TrainerActor.LEDGER_FILE), ledger.get());
        }
        AtomicFiles.write(root.resolve(TrainerCheckpoint.LATEST), (name.get() + "\n").getBytes(StandardCharsets.UTF_8));
        AtomicFiles.fsync(root);
        return Optional.of(fin);
    }
}
