# Throughput against producer threads; run from the repository root by
# bench/run.sh after report.py wrote bench/results/chart.dat.
set terminal pngcairo size 820,520 font "sans,10"
set output "docs/benchmarks.png"
set title "txmq sends (128-byte messages) vs baselines, same run"
set xlabel "producer threads"
set ylabel "messages per second"
set logscale xy
set xtics (1, 4, 16, 64)
set format y "%.0s%c"
set key inside right bottom box opaque
set grid ytics mytics
plot "bench/results/chart.dat" using 1:2 with linespoints lw 2 pt 7 title "txmq kSync", \
     "" using 1:3 with linespoints lw 2 pt 5 title "txmq kAsync", \
     "" using 1:6 with lines dt 2 lw 2 title "raw LMDB, 64 puts/txn (1 thread)", \
     "" using 1:7 with lines dt 5 lw 2 title "raw LMDB, 32 puts/txn (1 thread)", \
     "" using 1:5 with lines dt 3 lw 2 title "raw LMDB, 1 put/txn (1 thread)", \
     "" using 1:4 with lines dt 4 lw 2 title "SQLite WAL FULL, 1 row/txn (1 thread)"
