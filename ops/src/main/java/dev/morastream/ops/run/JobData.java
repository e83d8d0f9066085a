package dev.morastream.ops.run;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.morastream.actors.evaluator.EvaluatorActor;
import dev.morastream.models.eval.TaskSet;
import dev.morastream.models.llama.LlamaModel;
import dev.morastream.models.tokenizer.TextTokenizer;
import dev.morastream.models.train.PseudoRehearsal;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Consumer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/** What the job reads from files besides the stream: the evaluator's task sets and held-out text, the rehearsal prompts. */
final class JobData {
    private static final Logger log = LoggerFactory.getLogger(JobData.class);
    private static final ObjectMapper JSON = new ObjectMapper();

    private JobData() {}

    static EvaluatorActor.Settings evaluatorSettings(JobConfig cfg, LlamaModel model) throws IOException {
        JobConfig.Evaluator e = cfg.evaluator();
        List<TaskSet.Item> tasks = new ArrayList<>();
        if (Files.isRegularFile(e.tasksFile())) {
            Map<String, Integer> perSet = new HashMap<>();
            for (TaskSet.Item i : TaskSet.load(e.tasksFile())) {
                if (perSet.merge(i.set(), 1, Integer::sum) <= e.tasksPerSet() || e.tasksPerSet() == 0) {
                    tasks.add(i);
                }
            }
        } else {
            log.warn("no downstream task file {}: candidates are judged on memorisation and retention only", e.tasksFile());
        }
        String heldout = "";
        if (Files.isRegularFile(e.heldoutFile())) {
            heldout = Files.readString(e.heldoutFile(), StandardCharsets.UTF_8);
            if (e.heldoutChars() > 0 && heldout.length() > e.heldoutChars()) {
                heldout = heldout.substring(0, e.heldoutChars());
            }
        } else {
            log.warn("no held-out file {}: retention is not measured", e.heldoutFile());
        }
        return new EvaluatorActor.Settings(tasks, heldout, Math.min(e.window(), model.config().maxPositionEmbeddings()), e.maxNewTokens());
    }

    /**
     * The pseudo-rehearsal rows (the base's answers come from the cache in
     * {@code <data-dir>/rehearsal} or are generated there); none when the rehearsal share is 0.
     */
    static PseudoRehearsal.Rows rehearsalRows(JobConfig cfg, LlamaModel model, TextTokenizer tok, Consumer<String> say) {
        JobConfig.Stream s = cfg.stream();
        if (s.replay().rehearsalShare() <= 0) {
            return new PseudoRehearsal.Rows(List.of(), List.of());
        }
        try {
            PseudoRehearsal.Loaded l = PseudoRehearsal.loadOrGenerate(cfg.dataDir().resolve("rehearsal"),
                    PseudoRehearsal.identity(cfg.baseModel()), rehearsalPrompts(cfg), s.rehearsal().maxNewTokens(), model, tok, say::accept);
            PseudoRehearsal.Rows rows = PseudoRehearsal.rows(l.pairs(), tok, s.seqLen(), s.replay().seed());
            say.accept("pseudo-rehearsal: " + l.pairs().size() + " prompts answered by the base ("
                    + (l.generated() ? "generated into " : "cached in ") + l.file() + "), " + rows.tokens().size()
                    + " rows, replayed for " + Math.round(s.replay().rehearsalShare() * 100) + "% of the replayed rows");
            return rows;
        } catch (IOException e) {
            throw new UncheckedIOException("pseudo-rehearsal: cannot read its sources or write its cache", e);
        }
    }

    private static List<String> rehearsalPrompts(JobConfig cfg) throws IOException {
        JobConfig.Rehearsal r = cfg.stream().rehearsal();
        List<String> prompts = new ArrayList<>();
        if (r.baseSources()) {
            JobConfig.Evaluator e = cfg.evaluator();
            if (Files.isRegularFile(e.tasksFile())) {
                TaskSet.load(e.tasksFile()).forEach(i -> prompts.add(i.prompt()));
            }
            if (Files.isRegularFile(e.heldoutFile())) {
                String text = Files.readString(e.heldoutFile(), StandardCharsets.UTF_8);
                // lines after the part retention is scored on, so that retention stays held out
                int from = e.heldoutChars() > 0 ? Math.min(text.length(), e.heldoutChars()) : text.length() / 2;
                prompts.addAll(PseudoRehearsal.linePrompts(text.substring(from), r.heldoutLines()));
            }
        }
        for (Path f : r.files()) {
            List<String> lines = Files.readAllLines(f, StandardCharsets.UTF_8);
            for (int i = 0; i < lines.size(); i++) {
                String l = lines.get(i).strip();
                if (l.isEmpty()) {
                    continue;
                }
                JsonNode n;
                try {
                    n = JSON.readTree(l);
                } catch (IOException ex) {
                    throw new IllegalArgumentException("rehearsal file " + f + ":" + (i + 1) + ": not JSON: " + ex.getMessage());
                }
                if (n == null || !n.path("prompt").isTextual() || n.get("prompt").asText().isBlank()) {
                    throw new IllegalArgumentException("rehearsal file " + f + ":" + (i + 1) + ": needs a non-empty string field 'prompt'");
                }
                prompts.add(n.get("prompt").asText());
            }
        }
        return prompts;
    }
}
