package dev.morastream.ops.cli;

import dev.morastream.streams.kafka.EmbeddedKafka;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import sun.misc.Signal;

/**
 * The embedded KRaft broker alone, for a local cluster of {@code mora run} nodes that share it
 * ({@code --bootstrap-servers}). Prints one line, {@code broker ready: bootstrap HOST:PORT (data: DIR)},
 * on stdout once it serves (and writes the address to {@code DIR/bootstrap.servers}); SIGINT or
 * SIGTERM stops it cleanly and it exits 0. A data directory used before keeps its topics and records.
 */
@Command(name = "broker", mixinStandardHelpOptions = true,
        description = {"Run the embedded Kafka broker (KRaft, one node) alone, e.g. for several `mora run` nodes on one machine.",
            "Prints 'broker ready: bootstrap HOST:PORT (data: DIR)' on stdout when it serves; stops on SIGINT/SIGTERM.",
            "Its log cleaner is on, so compacted topics (promotions, state) are compacted."})
public final class BrokerCommand implements Callable<Integer> {
    @Option(names = "--data-dir", required = true, paramLabel = "DIR",
            description = "Where the broker keeps its logs and metadata; a directory used before keeps its topics.")
    Path dataDir;

    @Option(names = "--port", defaultValue = "9092", paramLabel = "P",
            description = "Client (PLAINTEXT) port on 127.0.0.1 (default ${DEFAULT-VALUE}; 0 = any free port).")
    int port;

    @Override
    public Integer call() throws Exception {
        CountDownLatch stop = new CountDownLatch(1);
        // handle SIGTERM and SIGINT on this thread's terms, so the broker shuts down in order and the
        // process exits 0 (the JVM's own handler would exit 143 with the broker half-stopped)
        for (String sig : new String[] {"TERM", "INT"}) {
            Signal.handle(new Signal(sig), s -> stop.countDown());
        }
        // the cleaner is off in the library default (tests); a broker that outlives a run compacts
        Map<String, String> overrides = Map.of(
                "log.cleaner.enable", "true",
                "log.cleaner.dedupe.buffer.size", String.valueOf(16 * 1024 * 1024));
        try (EmbeddedKafka kafka = EmbeddedKafka.start(dataDir, port, overrides)) {
            String bootstrap = kafka.bootstrapServers();
            Files.writeString(dataDir.resolve("bootstrap.servers"), bootstrap + "\n", StandardCharsets.UTF_8);
            System.out.println("broker ready: bootstrap " + bootstrap + " (data: " + dataDir.toAbsolutePath().normalize() + ")");
            System.out.flush();
            stop.await();
            System.err.println("mora broker: stopping");
        }
        System.err.println("mora broker: stopped");
        return 0;
    }
}
