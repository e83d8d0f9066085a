package dev.morastream.ops.cli;

import dev.morastream.streams.records.DeadLetterTopic;
import dev.morastream.streams.records.Rejected;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.time.format.DateTimeParseException;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.function.Predicate;
import org.apache.kafka.clients.CommonClientConfigs;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** The dead-letter topic: what was rejected and why, and replaying it once the cause is fixed. */
@Command(name = "dead-letters", mixinStandardHelpOptions = true,
        description = {"Inspect and replay the dead-letter topic (records the job could not train on, with why).",
            "The topic is only read (no consumer group, nothing committed)."},
        subcommands = {DeadLettersCommand.ListLetters.class, DeadLettersCommand.Replay.class})
public final class DeadLettersCommand implements Runnable {
    @CommandLine.Spec CommandLine.Model.CommandSpec spec;

    @Override
    public void run() {
        spec.commandLine().usage(System.err);
    }

    /** Where the topic is and which letters: shared by the subcommands. */
    static class Selection {
        @Option(names = "--bootstrap-servers", description = "Kafka bootstrap servers (default: the embedded broker of --data-dir, "
                + "from <data-dir>/kafka/bootstrap.servers).")
        String bootstrap;

        @Option(names = "--data-dir", defaultValue = "mora-data", description = "The job's data directory (default ${DEFAULT-VALUE}).")
        Path dataDir;

        @Option(names = "--topic", defaultValue = "mora.dead-letters", description = "Dead-letter topic (default ${DEFAULT-VALUE}).")
        String topic;

        @Option(names = "--since", paramLabel = "T",
                description = "Only letters written since T: an instant (2026-01-31T12:00:00Z) or a duration back from now (PT2H, 2h, 30m, 7d).")
        String since;

        @Option(names = "--client-config", paramLabel = "KEY=VALUE",
                description = "Extra Kafka client settings (repeatable), e.g. security.protocol=SASL_SSL.")
        Map<String, String> extra = new LinkedHashMap<>();

        Map<String, Object> clientProps() throws Exception {
            String servers = bootstrap;
            if (servers == null) {
                Path f = dataDir.resolve("kafka").resolve("bootstrap.servers");
                if (!Files.isRegularFile(f)) {
                    throw new IllegalArgumentException("no --bootstrap-servers and no embedded broker address in " + f
                            + " (is `bin/mora run` running with that --data-dir?)");
                }
                servers = Files.readString(f, StandardCharsets.UTF_8).trim();
            }
            Map<String, Object> p = new LinkedHashMap<>(extra);
            p.put(CommonClientConfigs.BOOTSTRAP_SERVERS_CONFIG, servers);
            return p;
        }

        Predicate<DeadLetterTopic.Letter> filter(String reason) {
            if (reason != null && Rejected.reasonOf(reason).isEmpty()) {
                throw new IllegalArgumentException("unknown reason '" + reason + "'; reasons: "
                        + java.util.Arrays.stream(Rejected.Reason.values()).map(Rejected.Reason::code).toList());
            }
            long from = since == null ? Long.MIN_VALUE : since(since, Instant.now()).toEpochMilli();
            return l -> (reason == null || reason.equals(l.reason())) && l.deadLetteredAt() >= from;
        }
    }

    static Instant since(String t, Instant now) {
        try {
            return Instant.parse(t);
        } catch (DateTimeParseException e) {
            // a duration
        }
        String s = t.trim().toLowerCase(Locale.ROOT);
        try {
            if (s.startsWith("p")) {
                return now.minus(Duration.parse(s.toUpperCase(Locale.ROOT)));
            }
            long n = Long.parseLong(s.substring(0, s.length() - 1));
            return switch (s.charAt(s.length() - 1)) {
                case 's' -> now.minusSeconds(n);
                case 'm' -> now.minusSeconds(60 * n);
                case 'h' -> now.minusSeconds(3600 * n);
                case 'd' -> now.minusSeconds(86400 * n);
                default -> throw new IllegalArgumentException();
            };
        } catch (RuntimeException e) {
            throw new IllegalArgumentException("--since " + t + ": not an instant (2026-01-31T12:00:00Z) nor a duration (PT2H, 2h, 30m, 7d)");
        }
    }

    @Command(name = "list", mixinStandardHelpOptions = true,
            description = "List dead letters: reason, source topic/partition@offset, original size, record id, when.")
    public static final class ListLetters implements Callable<Integer> {
        @CommandLine.Mixin Selection sel;

        @Option(names = "--reason", paramLabel = "R", description = "Only this reason (invalid-utf8, too-large, unknown-domain, …).")
        String reason;

        @Option(names = "--json", description = "One JSON object per line.")
        boolean json;

        @Override
        public Integer call() throws Exception {
            Predicate<DeadLetterTopic.Letter> which = sel.filter(reason);
            List<DeadLetterTopic.Letter> letters = DeadLetterTopic.read(sel.clientProps(), sel.topic, Duration.ofSeconds(60));
            int shown = 0;
            for (DeadLetterTopic.Letter l : letters) {
                if (!which.test(l)) {
                    continue;
                }
                shown++;
                if (json) {
                    Map<String, Object> o = new LinkedHashMap<>();
                    o.put("reason", l.reason());
                    o.put("detail", l.detail());
                    o.put("source_topic", l.sourceTopic());
                    o.put("source_partition", l.sourcePartition());
                    o.put("source_offset", l.sourceOffset());
                    o.put("size", l.size());
                    o.put("record_id", l.recordId());
                    o.put("truncated", l.truncated());
                    o.put("group", l.group());
                    o.put("exception_class", l.exceptionClass());
                    o.put("dead_lettered_at", Instant.ofEpochMilli(l.deadLetteredAt()).toString());
                    o.put("dlq_partition", l.partition());
                    o.put("dlq_offset", l.offset());
                    System.out.println(Json.line(o));
                } else {
                    System.out.printf(Locale.ROOT, "%-18s %s-%d@%d  %,d bytes%s  id=%s  %s  %s%n", l.reason(), l.sourceTopic(),
                            l.sourcePartition(), l.sourceOffset(), l.size(), l.isTruncated() ? " (cut: " + l.truncated() + ")" : "",
                            l.recordId(), Instant.ofEpochMilli(l.deadLetteredAt()), l.detail() == null ? "" : l.detail());
                }
            }
            System.err.printf(Locale.ROOT, "%d of %d dead letters in %s%n", shown, letters.size(), sel.topic);
            return 0;
        }
    }

    @Command(name = "replay", mixinStandardHelpOptions = true,
            description = {"Produce dead letters again, as they were (original key, value and headers, without the error headers), "
                    + "to their source topic or --to, e.g. after adding the domain they were rejected for.",
                "Letters whose value was cut to fit the dead-letter topic are skipped. Replaying the same letters twice produces them twice."})
    public static final class Replay implements Callable<Integer> {
        @CommandLine.Mixin Selection sel;

        @Option(names = "--reason", required = true, paramLabel = "R", description = "Replay the letters of this reason.")
        String reason;

        @Option(names = "--to", paramLabel = "TOPIC", description = "Produce to this topic (default: each letter's source topic).")
        String to;

        @Override
        public Integer call() throws Exception {
            Predicate<DeadLetterTopic.Letter> which = sel.filter(reason);
            Map<String, Object> props = sel.clientProps();
            List<DeadLetterTopic.Letter> letters = DeadLetterTopic.read(props, sel.topic, Duration.ofSeconds(60));
            DeadLetterTopic.Replayed r = DeadLetterTopic.replay(props, letters, which, to);
            System.err.printf(Locale.ROOT, "replayed %d dead letters (%s) to %s%s%n", r.replayed(), reason, r.perTopic(),
                    r.skippedTruncated() == 0 ? "" : "; skipped " + r.skippedTruncated() + " cut to fit (their original bytes are gone)");
            return 0;
        }
    }
}
