
outbound|80||*.bar.com